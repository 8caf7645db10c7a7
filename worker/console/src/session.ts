/** The API token lives in sessionStorage: gone when the tab closes, never in a URL or cookie. */
import { createClient, type TcoderClient } from "@tcoder/client";

const TOKEN_KEY = "tcoder.apiToken";

export const storedToken = (): string | null => sessionStorage.getItem(TOKEN_KEY);
export const storeToken = (token: string) => sessionStorage.setItem(TOKEN_KEY, token);
export const forgetToken = () => sessionStorage.removeItem(TOKEN_KEY);

/** The console is served by the API itself, so the API is this page's origin (no CORS). */
export const clientFor = (token: string): TcoderClient => createClient({ baseUrl: location.origin, token });
