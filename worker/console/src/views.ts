/** The console's three screens: sign in, home (upload + job list), and one job. */
import {
  DEFAULT_MULTIPART_THRESHOLD,
  isTerminal,
  type Job,
  presetNames,
  type TcoderClient,
  TcoderError,
  type UploadProgress,
  withPlaybackToken,
} from "./deps.ts";
import { clear, describeError, errorLine, formatBytes, h, percent } from "./dom.ts";
import { hlsPlayer } from "./player.ts";

export interface View {
  element: HTMLElement;
  dispose(): void;
}

const announcer = () => document.getElementById("announcer");
export const announce = (text: string) => {
  const el = announcer();
  if (el) el.textContent = text;
};

export function signInView(onToken: (token: string) => Promise<void>): View {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "current-password",
    required: true,
    spellcheck: "false",
  });
  const status = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-h" },
    h("h2", { id: "signin-h" }, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { class: "muted" }, "Kept in this tab's session storage only."),
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clear(status, "Checking…");
    onToken(input.value.trim()).catch((err: unknown) => clear(status, errorLine(err)));
  });
  queueMicrotask(() => input.focus());
  return { element: form, dispose() {} };
}

const stateBadge = (job: Job) => h("span", { class: `state state-${job.state}` }, job.state.replace("_", " "));
const jobName = (job: Job) => job.input.filename ?? job.id;
const jobLink = (job: Job) => h("a", { href: `#/jobs/${job.id}` }, jobName(job));

/** Per-file cards survive navigation: uploads keep running while the person looks at a job. */
const uploadList = h("ul", { class: "uploads", "aria-label": "Uploads in this session" });

function uploadCard(client: TcoderClient, file: File, preset: string): void {
  const uploadBar = h("progress", { max: 1, value: 0, "aria-label": `Upload of ${file.name}` });
  const transcodeBar = h("progress", { max: 1, value: 0, "aria-label": `Transcoding of ${file.name}` });
  const status = h("span", { class: "status" }, "starting upload");
  const title = h("span", { class: "name" }, file.name);
  const button = h("button", { type: "button", class: "secondary" }, "Stop");
  const problem = h("div");
  const card = h(
    "li",
    { class: "card upload", "data-file": file.name },
    h("div", { class: "row" }, title, h("span", { class: "muted" }, formatBytes(file.size))),
    h("div", { class: "bars" }, h("span", {}, "Upload"), uploadBar, h("span", {}, "Transcode"), transcodeBar),
    h("div", { class: "row" }, status, button),
    problem,
  );
  uploadList.prepend(card);
  const onProgress = (p: UploadProgress) => {
    uploadBar.value = p.fraction;
    status.textContent = `uploading ${percent(p.fraction)}${p.partCount ? ` (${p.partsDone}/${p.partCount} parts)` : ""}`;
  };
  let controller = new AbortController();
  let action: () => void = () => controller.abort();
  button.addEventListener("click", () => action());

  /** Uploads (or resumes), then follows the job to its end; a failed multipart upload offers Resume. */
  const run = async (send: (signal: AbortSignal) => Promise<Job>) => {
    controller = new AbortController();
    action = () => controller.abort();
    button.textContent = "Stop";
    button.hidden = false;
    clear(problem);
    card.dataset.state = "uploading";
    try {
      const uploaded = await send(controller.signal);
      uploadBar.value = 1;
      clear(title, jobLink(uploaded));
      button.hidden = true;
      announce(`${file.name} uploaded`);
      const done = await client.waitForJob(uploaded.id, {
        onProgress: (job) => {
          transcodeBar.value = job.state === "completed" ? 1 : job.progress;
          status.textContent = `${job.state.replace("_", " ")}${job.stage ? ` · ${job.stage}` : ""} ${percent(job.progress)}`;
          card.dataset.state = job.state;
        },
      });
      status.textContent = done.state === "completed" ? "done" : done.state.replace("_", " ");
      card.dataset.state = done.state;
      if (done.error) clear(problem, errorLine({ code: done.error.code, message: done.error.message }));
      announce(`${file.name}: ${done.state}`);
    } catch (err) {
      status.textContent = "upload stopped";
      card.dataset.state = "error";
      clear(problem, errorLine(err));
      announce(`${file.name}: ${describeError(err).message}`);
      const jobId = err instanceof TcoderError ? err.jobId : undefined;
      if (jobId && file.size > DEFAULT_MULTIPART_THRESHOLD && uploadBar.value < 1) {
        button.textContent = "Resume";
        action = () => void run((signal) => client.resumeUpload(jobId, file, { onProgress, signal }));
      } else button.hidden = true;
    }
  };
  void run((signal) => client.upload(file, { preset, onProgress, signal }));
}

export function homeView(client: TcoderClient): View {
  const preset = h("select", { id: "preset", name: "preset" }, ...presetNames.map((p) => h("option", { value: p }, p)));
  const files = h("input", {
    id: "files",
    type: "file",
    multiple: true,
    accept: "video/*,audio/*",
    class: "visually-hidden",
  });
  const drop = h(
    "label",
    { for: "files", class: "dropzone" },
    h("strong", {}, "Drop video files here"),
    h("span", {}, " or "),
    h("span", { class: "button-like" }, "choose files"),
  );
  const start = (list: FileList | null) => {
    for (const file of list ?? []) uploadCard(client, file, preset.value);
  };
  files.addEventListener("change", () => {
    start(files.files);
    files.value = "";
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    start(e.dataTransfer?.files ?? null);
  });

  const tbody = h("tbody");
  const listStatus = h("div", { "aria-live": "polite" });
  const table = h(
    "table",
    { class: "jobs" },
    h("caption", { class: "visually-hidden" }, "Recent jobs, newest first"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Source"),
        h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, "Progress"),
        h("th", { scope: "col" }, "Created"),
      ),
    ),
    tbody,
  );
  const element = h(
    "div",
    { class: "home" },
    h(
      "section",
      { "aria-labelledby": "upload-h" },
      h("h2", { id: "upload-h" }, "Upload"),
      h("div", { class: "field" }, h("label", { for: "preset" }, "Preset"), preset),
      drop,
      files,
      uploadList,
    ),
    h(
      "section",
      { "aria-labelledby": "jobs-h" },
      h("h2", { id: "jobs-h" }, "Jobs"),
      listStatus,
      h("div", { class: "scroll" }, table),
    ),
  );

  let timer: ReturnType<typeof setTimeout> | undefined;
  let disposed = false;
  const refresh = async () => {
    try {
      const page = await client.listJobPage({ limit: 25 });
      clear(listStatus);
      clear(
        tbody,
        ...page.jobs.map((job) =>
          h(
            "tr",
            { "data-job": job.id, "data-state": job.state },
            h("td", {}, jobLink(job)),
            h("td", {}, stateBadge(job)),
            h("td", {}, h("progress", { max: 1, value: job.progress, "aria-label": `Progress of ${jobName(job)}` })),
            h("td", {}, h("time", { datetime: job.createdAt }, new Date(job.createdAt).toLocaleString())),
          ),
        ),
      );
      if (page.jobs.length === 0) clear(listStatus, h("p", { class: "muted" }, "No jobs yet."));
    } catch (err) {
      clear(listStatus, errorLine(err));
    }
    if (!disposed) timer = setTimeout(refresh, 2_000);
  };
  void refresh();
  return {
    element,
    dispose() {
      disposed = true;
      clearTimeout(timer);
    },
  };
}

export function jobView(client: TcoderClient, id: string): View {
  const heading = h("h2", { id: "job-h", tabindex: "-1" }, id);
  const status = h("div", { class: "job-status", "aria-live": "polite" });
  const actions = h("div", { class: "actions" });
  const media = h("div", { class: "media" });
  const outputs = h("div");
  const details = h("dl", { class: "details" });
  const element = h(
    "article",
    { class: "job", "aria-labelledby": "job-h" },
    h("p", {}, h("a", { href: "#/" }, "← All jobs")),
    heading,
    status,
    actions,
    media,
    outputs,
    details,
  );
  const controller = new AbortController();
  let player: { dispose(): void } | null = null;
  /** What the player shows: a running chunked job's live playlists, or the finished package. */
  let playing: "live" | "package" | null = null;

  /** Delete asks first, in place: what goes, and a second button that does it. */
  const deleteAction = (job: Job) => {
    const ask = h("button", { type: "button", class: "secondary" }, "Delete…");
    ask.addEventListener("click", () => {
      const confirm = h("button", { type: "button", class: "danger" }, "Delete for good");
      const keep = h("button", { type: "button", class: "secondary" }, "Keep");
      const question = h(
        "div",
        { role: "alertdialog", "aria-labelledby": "delete-q", class: "confirm" },
        h(
          "p",
          { id: "delete-q" },
          `Delete ${jobName(job)}? Its source and every output are removed; this cannot be undone.`,
        ),
        h("div", { class: "row" }, confirm, keep),
      );
      keep.addEventListener("click", () => {
        question.replaceWith(ask);
        ask.focus();
      });
      confirm.addEventListener("click", async () => {
        confirm.disabled = true;
        keep.disabled = true;
        try {
          await client.deleteJob(job.id);
          render(await client.getJob(job.id));
          announce("Job deleted");
        } catch (err) {
          question.append(errorLine(err));
          confirm.disabled = false;
          keep.disabled = false;
        }
      });
      ask.replaceWith(question);
      confirm.focus();
    });
    return ask;
  };

  /** Playback and output links; `urlOf` adds the playback token to a signed job's URLs. */
  const showPackage = (job: Job, out: NonNullable<Job["outputs"]>, urlOf: (url: string) => string) => {
    const src = out.hlsMaster?.url;
    if (src) {
      const handle = hlsPlayer({
        src: urlOf(src),
        title: jobName(job),
        ...(out.poster ? { poster: urlOf(out.poster.url) } : {}),
        ...(out.thumbnailsVtt ? { thumbnailsVtt: urlOf(out.thumbnailsVtt.url) } : {}),
      });
      player = handle;
      clear(media, h("h3", {}, "Playback"), handle.element);
    } else if (out.mp4) {
      clear(
        media,
        h("h3", {}, "Playback"),
        h("video", {
          controls: true,
          src: urlOf(out.mp4.url),
          ...(out.poster ? { poster: urlOf(out.poster.url) } : {}),
        }),
      );
      player = { dispose() {} };
    }
    const link = (label: string, ref: { url: string } | undefined) =>
      ref ? h("li", {}, h("a", { href: urlOf(ref.url), target: "_blank", rel: "noopener" }, label)) : null;
    clear(
      outputs,
      h("h3", {}, "Outputs"),
      job.playback === "signed"
        ? h("p", { class: "muted" }, "Signed playback: these links carry a token that expires in an hour.")
        : null,
      h(
        "ul",
        { class: "outputs" },
        link("HLS master playlist", out.hlsMaster),
        ...out.renditions.map((r) => link(`${r.name} playlist (${r.width}×${r.height})`, r.playlist)),
        link("MP4", out.mp4),
        link("Poster", out.poster),
        link("Thumbnail sprite", out.thumbnailsSprite),
        link("Thumbnail index (WebVTT)", out.thumbnailsVtt),
        link("Manifest (JSON)", out.manifest),
      ),
    );
    if (out.thumbnailsSprite)
      outputs.append(
        h("img", {
          class: "sprite",
          src: urlOf(out.thumbnailsSprite.url),
          alt: "Thumbnail sprite sheet",
          loading: "lazy",
        }),
      );
  };

  const act = (label: string, run: () => Promise<Job>) => {
    const button = h("button", { type: "button" }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        render(await run());
        announce(`${label} done`);
        if (!controller.signal.aborted) void follow();
      } catch (err) {
        status.append(errorLine(err));
      } finally {
        button.disabled = false;
      }
    });
    return button;
  };

  const render = (job: Job) => {
    heading.textContent = jobName(job);
    element.dataset.state = job.state;
    clear(
      status,
      h(
        "p",
        {},
        stateBadge(job),
        job.stage && !isTerminal(job.state) ? ` ${job.stage}` : "",
        ` ${percent(job.progress)}`,
      ),
      h("progress", { max: 1, value: job.state === "completed" ? 1 : job.progress, "aria-label": "Job progress" }),
      job.error ? errorLine({ code: job.error.code, message: job.error.message }) : null,
    );
    // A poll in the same state leaves an open delete question alone: the person may be answering it.
    const asking = actions.dataset.state === job.state && actions.querySelector('[role="alertdialog"]') !== null;
    if (!asking) {
      actions.dataset.state = job.state;
      clear(
        actions,
        ["awaiting_upload", "pending", "running"].includes(job.state)
          ? act("Cancel", () => client.cancel(job.id))
          : null,
        ["failed", "canceled"].includes(job.state) ? act("Retry", () => client.retry(job.id)) : null,
        job.state === "deleted" ? null : deleteAction(job),
      );
    }
    const row = (term: string, value: string | number | undefined) =>
      value === undefined || value === "" ? [] : [h("dt", {}, term), h("dd", {}, String(value))];
    const video = job.probe?.video;
    clear(
      details,
      ...row("Job id", job.id),
      ...row("Preset", job.preset),
      ...row("Attempts", `${job.attempts} of ${job.maxAttempts}`),
      ...row("Source size", formatBytes(job.input.sizeBytes)),
      ...row("Source video", video ? `${video.codec} ${video.displayWidth}×${video.displayHeight}` : undefined),
      ...row("Duration", job.probe ? `${job.probe.durationSeconds.toFixed(1)} s` : undefined),
      ...row("Created", new Date(job.createdAt).toLocaleString()),
      ...row("Finished", job.finishedAt ? new Date(job.finishedAt).toLocaleString() : undefined),
      ...row("Playback", job.playback === "signed" ? "signed (token required)" : undefined),
      ...row("Machine time", job.usage ? `${job.usage.machineSeconds.toFixed(1)} s` : undefined),
      ...row("Stored", formatBytes(job.usage?.storedBytes)),
      ...row("Deleted", job.deletedAt ? new Date(job.deletedAt).toLocaleString() : undefined),
    );
    if (job.state === "deleted") {
      player?.dispose();
      player = null;
      playing = null;
      clear(media);
      clear(
        outputs,
        h(
          "p",
          { class: "muted" },
          job.purgedAt ? "Its source and outputs are removed." : "Removing its source and outputs…",
        ),
      );
      return;
    }
    /** Runs `show` with the job's URLs as players may fetch them: a signed job's carry a token (an hour). */
    const withUrls = (show: (urlOf: (url: string) => string) => void) => {
      if (job.playback !== "signed") return show((url) => url);
      client
        .createPlaybackToken(job.id, { expiresInSeconds: 3600, signal: controller.signal })
        .then(({ token }) => show((url) => withPlaybackToken(url, token)))
        .catch((err: unknown) => {
          if (!controller.signal.aborted) clear(media, errorLine(err));
        });
    };
    const out = job.outputs;
    if (job.state === "completed" && out && playing !== "package") {
      player?.dispose();
      player = { dispose() {} };
      playing = "package";
      withUrls((urlOf) => showPackage(job, out, urlOf));
    } else if (job.state === "running" && job.playable && job.live && !playing) {
      // A chunked job plays while it encodes: its live playlists grow as chunks are done.
      const live = job.live.hlsMaster.url;
      player = { dispose() {} };
      playing = "live";
      withUrls((urlOf) => {
        const handle = hlsPlayer({ src: urlOf(live), title: jobName(job) });
        player = handle;
        clear(
          media,
          h("h3", {}, "Playback"),
          h("p", { class: "muted" }, "Playing while it encodes: more of it appears as chunks are done."),
          handle.element,
        );
      });
    }
  };

  const follow = async () => {
    try {
      render(await client.waitForJob(id, { onProgress: render, signal: controller.signal, maxInterval: 2_000 }));
    } catch (err) {
      if (!controller.signal.aborted) clear(status, errorLine(err));
    }
  };
  void follow();
  queueMicrotask(() => heading.focus());
  return {
    element,
    dispose() {
      controller.abort();
      player?.dispose();
    },
  };
}
