// Builds one JavaScript tool into a component: node componentize.mjs SOURCE WIT_DIR WORLD OUT
// componentize-js's API is used directly: `jco componentize` cannot read paths outside its
// working directory.
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";

const [source, witDir, world, out] = process.argv.slice(2);
if (!out) {
  console.error("usage: node componentize.mjs SOURCE WIT_DIR WORLD OUT");
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(witDir),
  worldName: world,
  // A tool gets no network, so it needs no HTTP; stdio, clocks and random stay.
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
