// Signs a GitHub webhook body with GitHub's own library (@octokit/webhooks-methods), as
// GitHub does: `node github-sign.mjs <secret>` reads the body on stdin, prints the
// X-Hub-Signature-256 value.
import { sign, verify } from "@octokit/webhooks-methods";

let body = "";
for await (const chunk of process.stdin) body += chunk;
const secret = process.argv[2];
const signature = await sign(secret, body);
if (!(await verify(secret, body, signature))) throw new Error("the library rejects its own signature");
process.stdout.write(signature);
