// Bundles src/extension.ts and vscode-languageclient into out/extension.js (the .vsix ships no node_modules).
import { build } from "esbuild";

await build({
  entryPoints: ["src/extension.ts"],
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  external: ["vscode"],
  outfile: "out/extension.js",
  sourcemap: false,
  minify: false,
  logLevel: "info",
});
