/** A row-major matrix that grows by appending rows, with amortised doubling. */
export class GrowableRows {
  #buf: Float32Array;
  #rows = 0;
  constructor(readonly cols: number, initialRows = 1024) {
    this.#buf = new Float32Array(initialRows * cols);
  }
  get rows(): number {
    return this.#rows;
  }
  push(m: Float32Array /* [r, cols] */): void {
    const need = this.#rows * this.cols + m.length;
    if (need > this.#buf.length) {
      const next = new Float32Array(Math.max(need, this.#buf.length * 2));
      next.set(this.#buf.subarray(0, this.#rows * this.cols));
      this.#buf = next;
    }
    this.#buf.set(m, this.#rows * this.cols);
    this.#rows += m.length / this.cols;
  }
  /** The rows so far, without copying (valid until the next push). */
  view(): Float32Array {
    return this.#buf.subarray(0, this.#rows * this.cols);
  }
}
