/**
 * Builds the machine image the way the cloud does — `machine-image/Dockerfile`, unchanged, from the
 * repository root — with podman, so the image under test is the image that ships.
 *
 * The Dockerfile starts from Docker Hub's `node:20-bookworm-slim` and `debian:bookworm-slim`, which
 * cannot be pulled here. Local stand-ins take their names: a `debootstrap --variant=minbase`
 * bookworm from the machine's own apt source, slimmed the way Debian's official slim images are,
 * and for the node image the machine's own Node 20 binary and npm plus its CA bundle (npm in the
 * build then trusts what the machine trusts). The build runs with `--pull=never`.
 *
 * Everything is cached outside the repository, keyed by its inputs: the debootstrap tree under
 * `~/.cache/tcoder/`, the stand-ins and the machine image in podman's store with their key as a
 * label. Unchanged inputs build nothing.
 *
 *   npm run image:build      (node --import tsx stacks/local/src/services/machine-image.ts)
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { cp, mkdir, open, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { inspectImage, podman, podmanContainerFlags, podmanStreaming } from "./podman.ts";

const execFileAsync = promisify(execFile);
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");

/** The tag the local stack's machines run (its `MACHINE_IMAGE`). */
export const machineImageRef = "localhost/tcoder-machine:local";
/** The names the Dockerfile's `FROM` lines use; the stand-ins are tagged with them. */
const nodeBaseRef = "docker.io/library/node:20-bookworm-slim";
const debianBaseRef = "docker.io/library/debian:bookworm-slim";
const dockerfile = join(repoRoot, "machine-image", "Dockerfile");
const dockerignore = join(repoRoot, "machine-image", "Dockerfile.dockerignore");
const suite = "bookworm";
const inputsLabel = "tcoder.inputs";
/** Bump when the way a stand-in is made changes, so caches made the old way are not reused. */
const standInRecipe = "2";

/** Where builds keep what outlives a checkout (TCODER_CACHE_DIR, else ~/.cache/tcoder). */
export const cacheDir = () =>
  process.env.TCODER_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "tcoder");

export interface MachineImageBuild {
  ref: string;
  id: string;
  /** Uncompressed size, as `podman images` shows it. */
  sizeBytes: number;
  /** False when the inputs were unchanged and nothing was built. */
  built: boolean;
  /** Wall time of this call: base stand-ins, build (or the cache check) and all. */
  seconds: number;
  baseSeconds: number;
}

export interface BuildOptions {
  log?: (line: string) => void;
}

/** Builds what is missing or stale (base stand-ins, then the machine image); returns the image. */
export async function ensureMachineImage(opts: BuildOptions = {}): Promise<MachineImageBuild> {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  await requireTools();
  return withBuildLock(log, async () => {
    const bases = await ensureBaseImages(log);
    const baseSeconds = (performance.now() - started) / 1000;
    const key = hash([
      `base ${bases.nodeId} ${bases.debianId}`,
      await readFile(dockerfile, "utf8"),
      await readFile(dockerignore, "utf8"),
      ...(await contextFiles()).map((f) => `${f.path} ${f.sha256}`),
    ]);
    const existing = await inspectImage(machineImageRef);
    if (existing?.labels[inputsLabel] === key) {
      return summary(existing, false);
    }
    log(`building ${machineImageRef} from machine-image/Dockerfile`);
    await podmanStreaming(
      [
        "build",
        "--pull=never",
        ...podmanContainerFlags,
        "--label",
        `${inputsLabel}=${key}`,
        "--file",
        dockerfile,
        "--tag",
        machineImageRef,
        repoRoot,
      ],
      (line) => log(`  ${line}`),
    );
    const image = await inspectImage(machineImageRef);
    if (!image) throw new Error(`podman build finished but ${machineImageRef} is not in the store`);
    // Earlier builds (and replaced stand-ins) are left untagged; without this every source edit
    // would keep another copy. The builder stage's untagged layers stay: they are the build cache.
    await podman(["image", "prune", "--force", "--filter", `label=${inputsLabel}`]).catch(() => "");
    return summary(image, true);

    function summary(image: { id: string; size: number }, built: boolean): MachineImageBuild {
      return {
        ref: machineImageRef,
        id: image.id,
        sizeBytes: image.size,
        built,
        seconds: (performance.now() - started) / 1000,
        baseSeconds,
      };
    }
  });
}

/**
 * What a registry stores: each layer gzip-compressed (what every new Fly host pulls before the
 * first boot). Measured by saving the image with compressed layers; cached per image id.
 */
export async function compressedImageBytes(ref: string): Promise<number> {
  const image = await inspectImage(ref);
  if (!image) throw new Error(`no image ${ref}`);
  const cached = join(cacheDir(), "compressed-size", image.id);
  const known = await readFile(cached, "utf8").catch(() => null);
  if (known !== null) return Number(known);
  const scratch = join(cacheDir(), "tmp", `save-${process.pid}`);
  await rm(scratch, { recursive: true, force: true });
  await mkdir(dirname(scratch), { recursive: true });
  try {
    await podman(["save", "--format", "docker-dir", "--compress", "--output", scratch, image.id]);
    const manifest = JSON.parse(await readFile(join(scratch, "manifest.json"), "utf8")) as {
      config: { size: number };
      layers: { size: number }[];
    };
    const bytes = manifest.config.size + manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
    await mkdir(dirname(cached), { recursive: true });
    await writeFile(cached, String(bytes));
    return bytes;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

// --- the base stand-ins -------------------------------------------------------------------------

interface AptSource {
  /** The Debian mirror debootstrap fetches from. */
  mirror: string;
  /** The file that configures apt inside the image (the machine's own), and its contents. */
  path: string;
  text: string;
}

/** The machine's Debian apt source: the mirror debootstrap uses and the file apt in the image gets. */
async function hostAptSource(): Promise<AptSource> {
  const deb822 = "/etc/apt/sources.list.d/debian.sources";
  if (existsSync(deb822)) {
    const text = await readFile(deb822, "utf8");
    const mirror = /^URIs:\s*(\S+)/m.exec(text)?.[1];
    if (mirror) return { mirror, path: "etc/apt/sources.list.d/debian.sources", text };
  }
  const classic = await readFile("/etc/apt/sources.list", "utf8").catch(() => "");
  const mirror = new RegExp(`^deb\\s+(?:\\[[^\\]]*\\]\\s+)?(\\S+)\\s+${suite}\\s`, "m").exec(classic)?.[1];
  if (mirror) return { mirror, path: "etc/apt/sources.list", text: classic };
  throw new Error(`no Debian ${suite} apt source in /etc/apt (debootstrap needs a mirror)`);
}

/**
 * What Debian's slim images leave out (debuerreotype's slimify and minimizing config): docs, man
 * pages and translations, apt's package cache and lists. Applied to the tree and, as dpkg and apt
 * configuration, to everything installed on top of it later.
 */
const slimExcludes = [
  "/usr/share/doc/*",
  "/usr/share/groff/*",
  "/usr/share/info/*",
  "/usr/share/linda/*",
  "/usr/share/lintian/overrides/*",
  "/usr/share/locale/*",
  "/usr/share/man/*",
];
const slimIncludes = ["/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias"];
const dpkgSlimConfig = `${[...slimExcludes.map((p) => `path-exclude ${p}`), ...slimIncludes.map((p) => `path-include ${p}`)].join("\n")}\n`;
const aptCleanConfig = [
  'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
  'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
  'Dir::Cache::pkgcache "";',
  'Dir::Cache::srcpkgcache "";',
  'Acquire::Languages "none";',
  "",
].join("\n");

/** A slim bookworm tree from debootstrap, cached under ~/.cache/tcoder/debootstrap/<key>. */
async function ensureDebootstrapTree(
  source: AptSource,
  log: (line: string) => void,
): Promise<{ dir: string; key: string }> {
  const { stdout: version } = await execFileAsync("debootstrap", ["--version"]);
  const key = hash([
    standInRecipe,
    suite,
    "minbase",
    source.mirror,
    source.text,
    version.trim(),
    dpkgSlimConfig,
    aptCleanConfig,
  ]);
  const dir = join(cacheDir(), "debootstrap", key);
  if (existsSync(join(dir, "complete"))) return { dir, key };
  const scratch = `${dir}.partial`;
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });
  const rootfs = join(scratch, "rootfs");
  log(`debootstrap --variant=minbase ${suite} from ${source.mirror} (cached afterwards)`);
  await runLogged("debootstrap", ["--variant=minbase", suite, rootfs, source.mirror], log);
  await slimify(rootfs, source);
  await writeFile(join(scratch, "complete"), `${new Date().toISOString()}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(scratch, dir);
  return { dir, key };
}

async function slimify(rootfs: string, source: AptSource) {
  await writeFile(join(rootfs, "etc/dpkg/dpkg.cfg.d/docker"), dpkgSlimConfig);
  await writeFile(join(rootfs, "etc/apt/apt.conf.d/docker-clean"), aptCleanConfig);
  for (const pattern of slimExcludes) {
    const parent = join(rootfs, pattern.slice(0, -"/*".length));
    for (const entry of await readdir(parent).catch(() => [] as string[])) {
      const path = join(parent, entry);
      if (parent.endsWith("/usr/share/locale") && entry === "locale.alias") continue;
      if (parent.endsWith("/usr/share/doc")) {
        // Licences stay (slimify's include list); everything else in each package's doc dir goes.
        for (const inner of await readdir(path).catch(() => [] as string[])) {
          if (inner !== "copyright") await rm(join(path, inner), { recursive: true, force: true });
        }
        continue;
      }
      await rm(path, { recursive: true, force: true });
    }
  }
  await rm(join(rootfs, "var/cache/apt/archives"), { recursive: true, force: true });
  await mkdir(join(rootfs, "var/cache/apt/archives/partial"), { recursive: true });
  await rm(join(rootfs, "var/lib/apt/lists"), { recursive: true, force: true });
  await mkdir(join(rootfs, "var/lib/apt/lists/partial"), { recursive: true });
  // apt in the image reads the machine's own source list (updates and security included).
  await rm(join(rootfs, "etc/apt/sources.list"), { force: true });
  await mkdir(dirname(join(rootfs, source.path)), { recursive: true });
  await writeFile(join(rootfs, source.path), source.text);
}

const caBundle = "/etc/ssl/certs/ca-certificates.crt";
/** Where the node stand-in keeps the machine's CA bundle (NODE_EXTRA_CA_CERTS points here). */
const caInImage = "/usr/local/share/tcoder/ca-certificates.crt";
const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The two `FROM` images, as local stand-ins under their Docker Hub names. */
async function ensureBaseImages(log: (line: string) => void): Promise<{ nodeId: string; debianId: string }> {
  const nodeMajor = process.versions.node.split(".")[0];
  if (nodeMajor !== "20") {
    throw new Error(
      `the local stand-in for ${nodeBaseRef} uses this machine's Node, which is ${process.version}, not 20`,
    );
  }
  const source = await hostAptSource();
  const tree = await ensureDebootstrapTree(source, log);
  const rootfs = join(tree.dir, "rootfs");

  const debianKey = hash([tree.key, imagePath]);
  let debian = await inspectImage(debianBaseRef);
  if (debian?.labels[inputsLabel] !== debianKey) {
    log(`importing the debootstrap tree as ${debianBaseRef}`);
    await importTree(rootfs, undefined, debianBaseRef, [
      `LABEL ${inputsLabel}=${debianKey}`,
      `ENV ${imagePath}`,
      'CMD ["bash"]',
    ]);
    debian = await inspectImage(debianBaseRef);
  }

  const npmDir = join(dirname(dirname(process.execPath)), "lib", "node_modules", "npm");
  const npmPackage = JSON.parse(await readFile(join(npmDir, "package.json"), "utf8")) as { version: string };
  const nodeKey = hash([
    tree.key,
    await fileSha256(process.execPath),
    npmPackage.version,
    await fileSha256(caBundle),
    imagePath,
  ]);
  let node = await inspectImage(nodeBaseRef);
  if (node?.labels[inputsLabel] !== nodeKey) {
    log(`importing the debootstrap tree with Node ${process.version} and npm ${npmPackage.version} as ${nodeBaseRef}`);
    const extra = join(cacheDir(), "tmp", `node-layer-${process.pid}`);
    await rm(extra, { recursive: true, force: true });
    try {
      await mkdir(join(extra, "usr/local/bin"), { recursive: true });
      await mkdir(join(extra, "usr/local/lib/node_modules"), { recursive: true });
      await mkdir(join(extra, dirname(caInImage).slice(1)), { recursive: true });
      await cp(process.execPath, join(extra, "usr/local/bin/node"));
      await cp(npmDir, join(extra, "usr/local/lib/node_modules/npm"), { recursive: true, verbatimSymlinks: true });
      await symlink("../lib/node_modules/npm/bin/npm-cli.js", join(extra, "usr/local/bin/npm"));
      await symlink("../lib/node_modules/npm/bin/npx-cli.js", join(extra, "usr/local/bin/npx"));
      await cp(caBundle, join(extra, caInImage.slice(1)));
      await importTree(rootfs, extra, nodeBaseRef, [
        `LABEL ${inputsLabel}=${nodeKey}`,
        `ENV ${imagePath}`,
        `ENV NODE_VERSION=${process.versions.node}`,
        // npm in the build reaches the registry through whatever this machine trusts.
        `ENV NODE_EXTRA_CA_CERTS=${caInImage}`,
        'CMD ["node"]',
      ]);
    } finally {
      await rm(extra, { recursive: true, force: true });
    }
    node = await inspectImage(nodeBaseRef);
  }
  if (!node || !debian) throw new Error("podman import finished but a base image is not in the store");
  return { nodeId: node.id, debianId: debian.id };
}

/** `tar` of `rootfs`, plus `extra`'s files on top, piped into `podman import` as one layer. */
async function importTree(rootfs: string, extra: string | undefined, ref: string, changes: string[]) {
  // A layer may name each path once: add only what of `extra` is not already a directory of rootfs.
  const added: string[] = [];
  const walk = async (path: string): Promise<void> => {
    for (const entry of await readdir(join(extra as string, path), { withFileTypes: true })) {
      const inner = path === "" ? entry.name : `${path}/${entry.name}`;
      const inBase = await stat(join(rootfs, inner)).catch(() => null);
      if (entry.isDirectory() && inBase?.isDirectory()) await walk(inner);
      else added.push(inner);
    }
  };
  if (extra) await walk("");
  const tar = spawn(
    "tar",
    ["--numeric-owner", "-c", "-C", rootfs, ".", ...(extra ? ["-C", extra, ...added.map((p) => `./${p}`)] : [])],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const tarExited = new Promise<number | null>((resolve) => tar.once("close", resolve));
  await podmanStreaming(["import", ...changes.flatMap((c) => ["--change", c]), "-", ref], () => {}, {
    stdin: tar.stdout,
  });
  const code = await tarExited;
  if (code !== 0) throw new Error(`tar of ${rootfs} exited with ${code}`);
}

// --- the build context --------------------------------------------------------------------------

/**
 * Files the build reads: every `COPY` source of the Dockerfile (not `--from` a stage), directories
 * walked, minus what Dockerfile.dockerignore excludes. Their contents key the machine image.
 */
async function contextFiles(): Promise<{ path: string; sha256: string }[]> {
  const ignore = (await readFile(dockerignore, "utf8"))
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  for (const pattern of ignore) {
    // The key must see exactly what the build sees: refuse patterns this matcher does not know.
    if (/[*?[\]!]/.test(pattern.replace(/^\*\*\//, ""))) {
      throw new Error(`Dockerfile.dockerignore: pattern "${pattern}" is not understood by the image cache key`);
    }
  }
  const ignored = (path: string) =>
    ignore.some((pattern) =>
      pattern.startsWith("**/")
        ? path.split("/").includes(pattern.slice(3))
        : path === pattern || path.startsWith(`${pattern}/`),
    );
  const sources = (await readFile(dockerfile, "utf8"))
    .split("\n")
    .filter((line) => /^COPY\s/i.test(line) && !/--from=/i.test(line))
    .flatMap((line) =>
      line
        .trim()
        .split(/\s+/)
        .slice(1, -1)
        .filter((arg) => !arg.startsWith("--")),
    );
  const files = new Set<string>();
  const walk = async (path: string): Promise<void> => {
    if (ignored(path)) return;
    const info = await stat(join(repoRoot, path));
    if (info.isDirectory()) {
      for (const entry of await readdir(join(repoRoot, path))) await walk(`${path}/${entry}`);
    } else files.add(path);
  };
  for (const source of sources) await walk(relative(repoRoot, join(repoRoot, source)).replace(/\/$/, ""));
  return Promise.all([...files].sort().map(async (path) => ({ path, sha256: await fileSha256(join(repoRoot, path)) })));
}

/** The tools a build and container machines need; bootstrap.mjs installs them. */
async function requireTools() {
  const tools = ["podman", "runc", "catatonit", "debootstrap", "tar"];
  const missing: string[] = [];
  for (const tool of tools) {
    const found = await execFileAsync("sh", ["-c", `command -v ${tool}`]).then(
      () => true,
      () => false,
    );
    if (!found) missing.push(tool);
  }
  if (missing.length > 0) {
    throw new Error(
      `building the machine image needs ${missing.join(", ")}: run \`node stacks/local/bootstrap.mjs --for image\` (as root) or \`npm run image:build\``,
    );
  }
}

// --- small helpers ------------------------------------------------------------------------------

const hash = (parts: string[]) => createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 32);

function fileSha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const digest = createHash("sha256");
    createReadStream(path)
      .on("data", (chunk) => digest.update(chunk))
      .on("error", reject)
      .on("end", () => resolve(digest.digest("hex")));
  });
}

function runLogged(command: string, args: string[], log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let tail = "";
    const take = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.once("error", reject);
    child.once("close", (code) => {
      if (code === 0) resolve();
      else {
        log(tail);
        reject(new Error(`${command} exited with ${code}: ${tail.trim().split("\n").at(-1) ?? ""}`));
      }
    });
  });
}

/**
 * One build at a time per machine (two test files may ask at once): a lock file naming its owner's
 * pid; a lock whose owner is gone is taken over.
 */
async function withBuildLock<T>(log: (line: string) => void, work: () => Promise<T>): Promise<T> {
  const lock = join(cacheDir(), "build.lock");
  await mkdir(dirname(lock), { recursive: true });
  let announced = false;
  for (;;) {
    try {
      const handle = await open(lock, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number(await readFile(lock, "utf8").catch(() => ""));
      if (!ownerAlive(owner)) {
        await rm(lock, { force: true });
        continue;
      }
      if (!announced) log(`waiting for the image build of process ${owner}`);
      announced = true;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  try {
    return await work();
  } finally {
    await rm(lock, { force: true });
  }
}

function ownerAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const megabytes = (bytes: number) => `${(bytes / 1_000_000).toFixed(0)} MB`;

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const result = await ensureMachineImage({ log: (line) => process.stderr.write(`${line}\n`) });
  const compressedBytes = await compressedImageBytes(result.ref);
  if (process.argv.includes("--json")) {
    process.stdout.write(`${JSON.stringify({ ...result, compressedBytes })}\n`);
  } else {
    process.stdout.write(
      `${result.ref} ${result.built ? "built" : "up to date (inputs unchanged)"} in ${result.seconds.toFixed(1)} s ` +
        `(base images ${result.baseSeconds.toFixed(1)} s): ${megabytes(result.sizeBytes)}, ` +
        `${megabytes(compressedBytes)} compressed (gzip layers, as a registry stores them)\n`,
    );
  }
}
