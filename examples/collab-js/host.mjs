// The collaborative editor on a Roost node, with the document served from this Node.js process:
//   roost serve --static examples/collab/web --app-routes /api --remote-classes doc
//   node examples/collab-js/host.mjs http://127.0.0.1:8080
// then open http://127.0.0.1:8080/?doc=notes&name=you in two browsers.
import { serve } from "../../sdk/js/objects.js";
import { Document } from "./document.js";
import worker from "./worker.js";

export function start(url, options = {}) {
  return serve({ url, objects: { DOCS: { class: Document, name: "doc" } }, worker, ...options });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const host = await start(process.argv[2] || "http://127.0.0.1:8080");
  console.log(`serving class doc for ${host.url}`);
}
