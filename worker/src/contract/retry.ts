/**
 * The one retry policy of tcoder, for every caller that tries a request again itself: the SDK's
 * uploads, the worker's Fly client, the machine's control-plane events and object uploads, the
 * local store's event delivery. Exponential backoff with equal jitter (half the step fixed, half
 * random), so a flapping service gets real spacing while many clients spread out; a server's
 * `Retry-After` is a floor. Abortable while waiting. No imports, so it runs in workerd, Node and
 * the SDK's browser bundle alike.
 *
 * Count a library's own retries before wrapping it: the AWS SDK and aws4fetch already retry each
 * request, and a loop around them multiplies the tries.
 */

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** The step before the second try; it doubles with each try after that, up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** What a caller says of a failure: not worth another try, worth one, or worth one after at least `afterMs`. */
export type RetryVerdict = boolean | { afterMs: number };

export interface RetryOptions extends RetryPolicy {
  /** Whether `error` (from try number `attempt`) is worth another try. Default: every failure is. */
  retryIf?: (error: unknown, attempt: number) => RetryVerdict;
  /** Aborting stops the waiting at once; the wait rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Replaceable for tests. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

/** How long to wait after failed try number `attempt` (1 for the first): its step, half fixed and half random. */
export function backoffDelayMs(policy: Omit<RetryPolicy, "attempts">, attempt: number, random = Math.random): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt - 1, 30));
  return step / 2 + random() * (step / 2);
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs `task` (given the try number, 1 for the first) until it resolves, a failure is not worth
 * another try, or `attempts` tries have failed; then it rejects with the last failure.
 */
export async function retry<T>(task: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { attempts, retryIf = () => true, signal, sleep = abortableSleep, random = Math.random } = options;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await task(attempt);
    } catch (error) {
      if (signal?.aborted || attempt >= attempts) throw error;
      const verdict = retryIf(error, attempt);
      if (verdict === false) throw error;
      const delay = backoffDelayMs(options, attempt, random);
      await sleep(verdict === true ? delay : Math.max(delay, verdict.afterMs), signal);
    }
  }
}
