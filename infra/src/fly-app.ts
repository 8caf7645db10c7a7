import * as pulumi from "@pulumi/pulumi";

/** What a Fly app is made from; `name` and `orgSlug` cannot change in place. */
export interface FlyAppProviderInputs {
  name: string;
  orgSlug: string;
  /** Machines API base URL without `/v1` (https://api.machines.dev, or the local Fly API in tests). */
  apiBaseUrl: string;
  apiToken: string;
  network?: string;
}

export interface FlyAppProviderOutputs extends FlyAppProviderInputs {
  appId: string;
  status: string;
}

/**
 * A Pulumi dynamic provider for Fly apps over the Machines REST API (no Fly provider exists).
 *
 * Pulumi serializes this object into the state file and runs it later in another process, so
 * every helper lives inside the factory and only globals (`fetch`, `URL`, `Error`) are reached:
 * a captured module import would not survive serialization.
 */
export function flyAppProvider(): pulumi.dynamic.ResourceProvider<FlyAppProviderInputs, FlyAppProviderOutputs> {
  interface FlyAppJson {
    id: string;
    name: string;
    status?: string;
    organization?: { slug?: string };
  }

  async function call(
    inputs: Pick<FlyAppProviderInputs, "apiBaseUrl" | "apiToken">,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: unknown }> {
    const url = `${inputs.apiBaseUrl.replace(/\/+$/, "")}/v1${path}`;
    const response = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${inputs.apiToken}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return { status: response.status, json };
  }

  function failure(action: string, status: number, json: unknown): Error {
    const detail =
      typeof json === "object" && json !== null && "error" in json ? String(json.error) : JSON.stringify(json ?? "");
    const hint =
      status === 401 || status === 403
        ? " (check the Fly API token: tcoder:flyApiToken)"
        : status === 422
          ? " (app names are global on Fly: choose another tcoder:flyAppName)"
          : "";
    return new Error(`Fly API: ${action} failed with HTTP ${status}: ${detail}${hint}`);
  }

  async function getApp(inputs: FlyAppProviderInputs, name: string): Promise<FlyAppJson | undefined> {
    const { status, json } = await call(inputs, "GET", `/apps/${encodeURIComponent(name)}`);
    if (status === 404) return undefined;
    if (status !== 200) throw failure(`reading app ${name}`, status, json);
    return json as FlyAppJson;
  }

  function outputsOf(inputs: FlyAppProviderInputs, app: FlyAppJson): FlyAppProviderOutputs {
    return { ...inputs, appId: app.id, status: app.status ?? "pending" };
  }

  return {
    async check(_olds, news) {
      const failures = [];
      if (!/^[a-z0-9][a-z0-9-]{1,62}$/.test(news.name ?? "")) {
        failures.push({ property: "name", reason: "Fly app names are 2-63 lowercase letters, digits or dashes" });
      }
      if (!news.orgSlug) failures.push({ property: "orgSlug", reason: "an organization slug is required" });
      return { inputs: news, failures };
    },

    async diff(_id, olds, news) {
      const replaces = (["name", "orgSlug", "network"] as const).filter((key) => olds[key] !== news[key]);
      const changes = replaces.length > 0 || olds.apiBaseUrl !== news.apiBaseUrl || olds.apiToken !== news.apiToken;
      // App names are global on Fly: moving an app to another org under the same name must free
      // the name first; a new name can be created before the old app goes.
      return { changes, replaces, deleteBeforeReplace: replaces.length > 0 && olds.name === news.name };
    },

    async create(inputs) {
      const body = {
        app_name: inputs.name,
        org_slug: inputs.orgSlug,
        ...(inputs.network ? { network: inputs.network } : {}),
      };
      const { status, json } = await call(inputs, "POST", "/apps", body);
      if (status !== 201 && status !== 200) {
        // A rerun after a partial failure (the app was created, the state write was not) finds its
        // own app: adopt it when it is in the org this stack names; anyone else's name stays an error.
        const existing = status === 422 || status === 409 ? await getApp(inputs, inputs.name) : undefined;
        if (!existing || existing.organization?.slug !== inputs.orgSlug) {
          throw failure(`creating app ${inputs.name}`, status, json);
        }
        return { id: inputs.name, outs: outputsOf(inputs, existing) };
      }
      // The create answer may carry only {id, created_at}; the app as GET shows it is the truth.
      const app = await getApp(inputs, inputs.name);
      if (!app) throw new Error(`Fly API: app ${inputs.name} was created but cannot be read back`);
      return { id: inputs.name, outs: outputsOf(inputs, app) };
    },

    async read(id, props) {
      if (!props) throw new Error(`Fly API: reading app ${id} needs its stored inputs (apiBaseUrl, apiToken)`);
      const app = await getApp(props, id);
      // An empty id tells the engine the app is gone (deleted outside Pulumi).
      if (!app) return { id: "" };
      return { id, props: outputsOf({ ...props, orgSlug: app.organization?.slug ?? props.orgSlug }, app) };
    },

    async update(_id, _olds, news) {
      const app = await getApp(news, news.name);
      if (!app) throw new Error(`Fly API: app ${news.name} no longer exists; run pulumi refresh`);
      return { outs: outputsOf(news, app) };
    },

    async delete(id, props) {
      const { status, json } = await call(props, "DELETE", `/apps/${encodeURIComponent(id)}`);
      if (status === 404) return;
      if (status < 200 || status >= 300) throw failure(`deleting app ${id}`, status, json);
    },
  };
}

export interface FlyAppArgs {
  name: pulumi.Input<string>;
  orgSlug: pulumi.Input<string>;
  apiBaseUrl: pulumi.Input<string>;
  apiToken: pulumi.Input<string>;
  network?: pulumi.Input<string>;
}

/** A Fly app (the home of the transcoding machines), managed through `flyAppProvider`. */
export class FlyApp extends pulumi.dynamic.Resource {
  // `declare`, not a field: an ES2022 class field would overwrite the outputs `super()` set.
  declare readonly name: pulumi.Output<string>;
  declare readonly orgSlug: pulumi.Output<string>;
  declare readonly appId: pulumi.Output<string>;
  declare readonly status: pulumi.Output<string>;

  constructor(name: string, args: FlyAppArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      flyAppProvider(),
      name,
      { ...args, apiToken: pulumi.secret(args.apiToken), appId: undefined, status: undefined },
      { ...opts, additionalSecretOutputs: ["apiToken"] },
      "fly",
      "App",
    );
  }
}
