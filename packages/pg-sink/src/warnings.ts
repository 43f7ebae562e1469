/** Warnings per stream, handed to the pipeline with the stream's next write result. */
export class StreamWarnings {
  readonly #byStream = new Map<string, string[]>();

  /** At most 100 per stream between two writes: a noisy file cannot grow memory. */
  add(stream: string, message: string): void {
    const list = this.#byStream.get(stream) ?? [];
    if (list.length < 100) list.push(message);
    this.#byStream.set(stream, list);
  }

  /** The stream's warnings since the last write, as a write result's field. */
  take(stream: string): { warnings?: string[] } {
    const warnings = this.#byStream.get(stream);
    if (!warnings?.length) return {};
    this.#byStream.delete(stream);
    return { warnings };
  }
}
