// A Node.js serving node's policy signature check, written from docs/wire-contract.md alone.
//
// The contract: `signature` is "hmac-sha256:" + lowercase hex of HMAC-SHA256, with the
// shared key, over the UTF-8 bytes of the RFC 8785 (JCS) form of the message without
// `signature`. JCS comes from npm's `canonicalize`; nothing here comes from stopbandit.
//
// Input: one JSON object per line on stdin, {"key": "<shared key>", "message": "<the
// policy message's JSON text, as a node receives it>"}. Output: one line per input,
// {"ok": true} or {"ok": false, "reason": "..."}, in the same order.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createInterface } from "node:readline";
import canonicalize from "canonicalize";

const PREFIX = "hmac-sha256:";

export function verify(key, messageText) {
  const message = JSON.parse(messageText);
  if (message === null || typeof message !== "object" || Array.isArray(message)) {
    return { ok: false, reason: "not a JSON object" };
  }
  const { signature, ...body } = message;
  if (typeof signature !== "string" || !signature.startsWith(PREFIX)) {
    return { ok: false, reason: "unsigned" };
  }
  const canonical = canonicalize(body);
  const expected = PREFIX + createHmac("sha256", key).update(canonical, "utf8").digest("hex");
  const given = Buffer.from(signature, "utf8");
  const wanted = Buffer.from(expected, "utf8");
  if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
    return { ok: false, reason: "mismatch", canonical };
  }
  return { ok: true, canonical };
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === "") continue;
  const { key, message } = JSON.parse(line);
  let result;
  try {
    result = verify(key, message);
  } catch (error) {
    result = { ok: false, reason: `error: ${error.message}` };
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}
