/**
 * The tcoder web console: a token sign-in, uploads with progress, the job list and job pages.
 * Routes are URL fragments (`#/`, `#/jobs/<id>`), so the worker serves one page.
 */
import { clear, h } from "./dom.ts";
import { clientFor, forgetToken, storedToken, storeToken } from "./session.ts";
import { homeView, jobView, signInView, type View } from "./views.ts";

const main = document.getElementById("main") as HTMLElement;
const account = document.getElementById("account") as HTMLElement;
let current: View | null = null;

async function signIn(token: string): Promise<void> {
  // One cheap authenticated call tells a wrong token from a right one before anything is stored.
  await clientFor(token).listJobPage({ limit: 1 });
  storeToken(token);
  render();
}

function render(): void {
  current?.dispose();
  const token = storedToken();
  if (!token) {
    clear(account);
    current = signInView(signIn);
  } else {
    const signOut = h("button", { type: "button", class: "secondary" }, "Sign out");
    signOut.addEventListener("click", () => {
      forgetToken();
      location.hash = "#/";
      render();
    });
    clear(account, signOut);
    const client = clientFor(token);
    const job = /^#\/jobs\/([\w-]+)$/.exec(location.hash);
    current = job?.[1] ? jobView(client, job[1]) : homeView(client);
  }
  clear(main, current.element);
}

window.addEventListener("hashchange", render);
render();
