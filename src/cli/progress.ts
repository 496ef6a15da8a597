/**
 * Progress for long steps: a redrawn bar with ETA on a TTY, plain log lines (at most
 * one per 10% or 5 s) otherwise, nothing with `quiet`. Writes to stderr so that stdout
 * stays clean for --json.
 */
export interface Progress {
  update(done: number, total: number, note?: string): void;
  done(note?: string): void;
}

/**
 * One bar. `start` is when the task began (default: now); elapsed time is measured from it.
 */
export function progress(label: string, options: { quiet?: boolean; stream?: NodeJS.WriteStream; start?: number } = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const start = options.start ?? Date.now();
  let lastLog = 0;
  let lastPct = -1;
  // The rate comes from the work seen since the bar opened (work done before its first update
  // is not credited to the time since `start`), so the ETA stays honest for a late first report.
  let first: { at: number; done: number } | null = null;
  if (options.quiet) return { update() {}, done() {} };
  const tty = Boolean(stream.isTTY);
  return {
    update(done, total, note) {
      const frac = total > 0 ? Math.min(1, done / total) : 0;
      const now = Date.now();
      first ??= { at: now, done };
      const el = (now - start) / 1000;
      const rate = done > first.done ? (done - first.done) / ((now - first.at) / 1000 || 1e-3) : Number.NaN;
      const eta = Number.isFinite(rate) ? Math.max(0, total - done) / rate : Number.NaN;
      const tail = `${(frac * 100).toFixed(0).padStart(3)}% ${done}/${total} ${fmtSec(el)} elapsed${Number.isFinite(eta) ? `, ETA ${fmtSec(eta)}` : ''}${note ? `  ${note}` : ''}`;
      if (tty) {
        const width = 24;
        const fill = Math.round(frac * width);
        stream.write(`\r${label} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${tail}\x1b[K`);
      } else {
        const pct = Math.floor(frac * 10);
        if (pct > lastPct || Date.now() - lastLog > 5000) {
          lastPct = pct;
          lastLog = Date.now();
          stream.write(`${label}: ${tail}\n`);
        }
      }
    },
    done(note) {
      const el = (Date.now() - start) / 1000;
      stream.write(`${tty ? '\r' : ''}${label}: done in ${fmtSec(el)}${note ? `  ${note}` : ''}${tty ? '\x1b[K' : ''}\n`);
    },
  };
}

export function fmtSec(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${Math.round(s - m * 60).toString().padStart(2, '0')}s`;
}

/**
 * Named progress bars, opened on first update and closed when done: the `progress`
 * callback the experiments take, `(label, done, total)`.
 */
export function progressBars(quiet: boolean, stream?: NodeJS.WriteStream): (label: string, done: number, total: number) => void {
  const open = new Map<string, Progress>();
  let lastClosed: string | null = null;
  return (label, done, total) => {
    if (quiet) return;
    let p = open.get(label);
    if (!p) {
      // A closing report for a bar that just finished (e.g. "training done" after the last epoch) is not a new bar.
      if (done >= total && label === lastClosed) return;
      open.set(label, (p = progress(label, { stream })));
    }
    p.update(done, total);
    if (done >= total) {
      p.done();
      open.delete(label);
      lastClosed = label;
    }
  };
}
