// Builds the dashboard into dist/ (committed: the nephrocare binary embeds it, so building
// or running the service needs no Node.js): esbuild bundles src/main.ts (ES modules, code
// split: MQTT.js and uPlot load when first needed), minified, with content-hashed names
// under dist/assets/, and writes dist/index.html pointing at them.
//
//   node build.mjs            build into dist/
//   node build.mjs --check    build into a temporary folder and fail if dist/ differs
//                             (CI: the committed assets are exactly what the sources build)
//   node build.mjs --sizes    also print each asset's size, raw and gzipped
import { build } from "esbuild";
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";

const here = new URL(".", import.meta.url).pathname;
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "nc-dashboard-")) : join(here, "dist");

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts", "src/style.css", "src/icon.svg"],
  outdir: join(out, "assets"),
  bundle: true,
  splitting: true,
  format: "esm",
  target: ["es2022", "chrome110", "firefox110", "safari16"],
  platform: "browser",
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  entryNames: "[name]-[hash]",
  chunkNames: "chunk-[hash]",
  assetNames: "[name]-[hash]",
  loader: { ".svg": "file" },
  metafile: true,
  logLevel: "warning",
});

// The entry points' hashed names, for index.html.
const outputs = Object.entries(result.metafile.outputs);
const named = (entry) => {
  const found = outputs.find(([, o]) => o.entryPoint === entry);
  if (!found) throw new Error(`no output for ${entry}`);
  return relative(out, join(here, found[0]));
};
const script = named("src/main.ts");
const style = named("src/style.css");
const icon = outputs
  .map(([p]) => relative(out, join(here, p)))
  .find((p) => /^assets\/icon-[A-Z0-9]+\.svg$/.test(p));
if (!icon) throw new Error("no icon output");
// The JS emitted for the SVG entry is not needed.
for (const [p] of outputs) {
  const rel = relative(out, join(here, p));
  if (/^assets\/icon-[A-Z0-9]+\.js$/.test(rel)) rmSync(join(out, rel));
}

const index = readFileSync(join(here, "src/index.html"), "utf8")
  .replaceAll("%SCRIPT%", `/${script}`)
  .replaceAll("%STYLE%", `/${style}`)
  .replaceAll("%ICON%", `/${icon}`);
writeFileSync(join(out, "index.html"), index);

/** Every file under `root`, relative to it, sorted. */
function files(root, dir = root) {
  return readdirSync(dir)
    .flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(root, join(dir, f)) : [relative(root, join(dir, f))]))
    .sort();
}

if (process.argv.includes("--sizes") || check) {
  let raw = 0;
  let gz = 0;
  for (const f of files(out)) {
    const bytes = readFileSync(join(out, f));
    raw += bytes.length;
    gz += gzipSync(bytes, { level: 9 }).length;
    if (process.argv.includes("--sizes")) {
      console.log(`${f.padEnd(40)} ${String(bytes.length).padStart(8)} B  ${String(gzipSync(bytes, { level: 9 }).length).padStart(7)} B gzip`);
    }
  }
  console.log(`dashboard: ${files(out).length} files, ${(raw / 1024).toFixed(1)} KiB (${(gz / 1024).toFixed(1)} KiB gzipped)`);
}

if (check) {
  const committed = join(here, "dist");
  const a = files(out);
  const b = statSync(committed, { throwIfNoEntry: false }) ? files(committed) : [];
  const differ =
    a.length !== b.length ||
    a.some((f, i) => f !== b[i] || !readFileSync(join(out, f)).equals(readFileSync(join(committed, f))));
  rmSync(out, { recursive: true, force: true });
  if (differ) {
    console.error(
      "dashboard/dist does not match the sources: run scripts/dashboard.sh build and commit dashboard/dist\n" +
        `  built:     ${a.join(" ")}\n  committed: ${b.join(" ")}`,
    );
    process.exit(1);
  }
  console.log("dashboard/dist matches the sources");
}
