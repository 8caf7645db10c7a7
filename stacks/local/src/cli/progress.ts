/**
 * Per-job progress on stderr: redrawn bars on a terminal, one line per change of stage otherwise
 * (CI logs and pipes stay readable).
 */
export interface JobLine {
  label: string;
  phase: "upload" | "transcode" | "captions" | "done" | "failed";
  fraction: number;
  detail: string;
}

const width = 24;
const bar = (fraction: number) => {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
};

export function createProgress(stream: NodeJS.WriteStream = process.stderr) {
  const lines = new Map<string, JobLine>();
  const lastPrinted = new Map<string, string>();
  let drawn = 0;
  const tty = stream.isTTY === true;

  const format = (line: JobLine) =>
    `${line.label.padEnd(28).slice(0, 28)} ${line.phase.padEnd(9)} ${bar(line.fraction)} ${String(
      Math.round(line.fraction * 100),
    ).padStart(3)}% ${line.detail}`;

  const redraw = () => {
    if (drawn > 0) stream.write(`\x1b[${drawn}A`);
    for (const line of lines.values()) stream.write(`\x1b[2K${format(line)}\n`);
    drawn = lines.size;
  };

  return {
    update(id: string, line: JobLine) {
      lines.set(id, line);
      if (tty) return redraw();
      // Without a terminal: print when the phase/detail changes or every 25%.
      const key = `${line.phase}|${line.detail}|${Math.floor(line.fraction * 4)}`;
      if (lastPrinted.get(id) === key) return;
      lastPrinted.set(id, key);
      stream.write(`${format(line)}\n`);
    },
    /** Prints a line above the bars without tearing them. */
    log(message: string) {
      if (tty && drawn > 0) {
        stream.write(`\x1b[${drawn}A\x1b[0J`);
        drawn = 0;
        stream.write(`${message}\n`);
        redraw();
      } else {
        stream.write(`${message}\n`);
      }
    },
  };
}
export type Progress = ReturnType<typeof createProgress>;
