// A receiver for Herald's webhooks that verifies them by hand, with Node's own modules only.
//
//     WEBHOOK_SECRET=whsec_... PORT=8000 node receiver.js
//
// It answers 200 to a genuine delivery (processing each webhook-id once) and 400, with the
// reason, to anything else. The check itself is `verify`.

"use strict";

const crypto = require("node:crypto");
const http = require("node:http");

const TOLERANCE_SECONDS = 5 * 60;

class InvalidWebhook extends Error {}

// Checks one delivery and returns its webhook-id, or throws InvalidWebhook. `headers` has
// lower-case names (as Node's `req.headers`); `body` is the raw Buffer received, before any
// JSON parsing (with Express: `express.raw({ type: "application/json" })`).
function verify(secret, headers, body, now = Date.now() / 1000) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) {
    throw new InvalidWebhook("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^[0-9]+$/.test(timestamp)) {
    throw new InvalidWebhook("webhook-timestamp is not a unix time");
  }
  if (Math.abs(now - Number(timestamp)) > TOLERANCE_SECONDS) {
    throw new InvalidWebhook("webhook-timestamp is more than 5 minutes away from now");
  }

  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = Buffer.from(
    crypto.createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest("base64"),
  );
  // One "v1,<base64>" entry per secret Herald signs with (two during a rotation).
  for (const entry of signatures.split(" ")) {
    const comma = entry.indexOf(",");
    const version = entry.slice(0, comma);
    const signature = Buffer.from(entry.slice(comma + 1));
    if (
      comma > 0 &&
      version === "v1" &&
      signature.length === expected.length &&
      crypto.timingSafeEqual(signature, expected)
    ) {
      return id;
    }
  }
  throw new InvalidWebhook("no signature matches");
}

// Ids already processed. In production: a table with a unique key on webhook-id, written in
// the same transaction as the work the event causes.
const processed = new Set();

// Your work. Keep it short, or queue it: Herald waits at most 15 s for the answer.
function handle(_event) {}

function serve(secret, port) {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const answer = (status, text) => {
        console.log(status, req.headers["webhook-id"], text);
        res.writeHead(status, { "content-type": "text/plain" }).end(text);
      };
      const body = Buffer.concat(chunks);
      let id;
      try {
        id = verify(secret, req.headers, body);
      } catch (e) {
        if (e instanceof InvalidWebhook) return answer(400, `rejected: ${e.message}`);
        throw e;
      }
      if (processed.has(id)) return answer(200, "already processed");
      handle(JSON.parse(body));
      processed.add(id);
      answer(200, "processed");
    });
  });
  server.listen(port, "127.0.0.1", () => {
    console.log(`listening on http://127.0.0.1:${server.address().port}/webhooks`);
  });
}

module.exports = { verify, InvalidWebhook };

if (require.main === module) {
  serve(process.env.WEBHOOK_SECRET, Number(process.env.PORT ?? 8000));
}
