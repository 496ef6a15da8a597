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
    this.#reserve(m.length / this.cols);
    this.#buf.set(m, this.#rows * this.cols);
    this.#rows += m.length / this.cols;
  }
  /** Append rows `rows` of `m` ([*, cols]), copied straight in (no temporary). */
  pushRows(m: Float32Array, rows: ArrayLike<number>): void {
    this.#reserve(rows.length);
    const c = this.cols;
    for (let i = 0; i < rows.length; i++) this.#buf.set(m.subarray(rows[i]! * c, (rows[i]! + 1) * c), (this.#rows + i) * c);
    this.#rows += rows.length;
  }
  #reserve(more: number): void {
    const need = (this.#rows + more) * this.cols;
    if (need > this.#buf.length) {
      const next = new Float32Array(Math.max(need, this.#buf.length * 2));
      next.set(this.#buf.subarray(0, this.#rows * this.cols));
      this.#buf = next;
    }
  }
  /** The rows so far, without copying (valid until the next push). */
  view(): Float32Array {
    return this.#buf.subarray(0, this.#rows * this.cols);
  }
}
