// The remote side of bench/hosts_bench.mjs: class "EchoJs", the same as bench/echo_actor.cpp's
// Echo, on a Node.js host with the Cloudflare-style runtime.
import { serve, DurableObject } from "../../sdk/js/objects.js";

class EchoJs extends DurableObject {
  async fetch(request) {
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }
  async webSocketMessage(ws, message) {
    const n = ((await this.ctx.storage.get("n")) ?? 0) + 1;
    this.ctx.storage.put("n", n);
    ws.send(message);
  }
}

await serve({ url: process.argv[2], objects: { ECHO: EchoJs } });
process.stdout.write("REGISTERED\n");
