/** A peer broke the milter protocol. The session logs `reason` and closes that connection only. */
export class MilterProtocolError extends Error {
  constructor(
    readonly reason: string,
    detail?: string,
  ) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'MilterProtocolError';
  }
}
