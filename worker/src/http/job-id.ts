/**
 * Job ids sort by creation time: `job_` + 10 Crockford base32 chars of milliseconds + 16 random
 * chars (80 bits), all lowercase, so listing by id is listing by age and ids are unguessable.
 */
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

export const JOB_ID_PATTERN = /^job_[0-9a-hjkmnp-tv-z]{26}$/;

export function newJobId(nowMs: number = Date.now()): string {
  let time = "";
  let t = Math.floor(nowMs);
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const random = crypto.getRandomValues(new Uint8Array(16));
  let tail = "";
  for (const byte of random) tail += ALPHABET[byte % 32];
  return `job_${time}${tail}`;
}
