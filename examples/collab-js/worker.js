// The app's front (a Worker's default export): GET /api/docs/{name} answers the document's text.
// Editors reach their document at /v1/objects/doc/{name}/connect (roost.js), served by the same
// class; the page itself is static (examples/collab/web).
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const m = url.pathname.match(/^\/api\/docs\/([^/]+)$/);
    if (!m || request.method !== "GET") return new Response("not found", { status: 404 });
    return env.DOCS.get(env.DOCS.idFromName(decodeURIComponent(m[1]))).fetch(request);
  },
};
