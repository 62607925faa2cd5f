/** A peer broke the milter protocol. The session logs `reason` and closes that connection only. */
export class MilterProtocolError extends Error {
  /** Whole frames decoded before the bad one in the same input: the session still processes them. */
  framesBefore: Array<{ code: number; payload: Buffer }> = [];

  constructor(
    readonly reason: string,
    detail?: string,
  ) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'MilterProtocolError';
  }
}
