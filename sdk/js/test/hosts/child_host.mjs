// A host in its own process, for the tests that kill one: serves the Work class; a message with
// {"hang": true} on its first attempt writes, says "MIDTURN" on stdout, and never finishes.
import { serve, DurableObject } from "../../objects.js";

class Work extends DurableObject {
  async message(body, info) {
    const n = ((await this.ctx.storage.get("n")) ?? 0) + 1;
    await this.ctx.storage.put("n", n);
    await this.ctx.storage.put("attempts", info.attempt);
    this.ctx.storage.put("by", "child");
    if (body.hang && info.attempt === 1) {
      process.stdout.write("MIDTURN\n");
      await new Promise(() => {});
    }
  }
}

await serve({ url: process.argv[2], objects: { WORK: Work } });
process.stdout.write("REGISTERED\n");
