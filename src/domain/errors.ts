/** Every failure the system reports has one of these codes (they travel in TaskError.code). */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'PATH_VIOLATION'
  | 'NOT_FOUND'
  | 'SESSION_NOT_FOUND'
  | 'TASK_NOT_FOUND'
  | 'WORKER_LOST'
  // the worker or coordinator cannot be reached now; retry
  | 'UNAVAILABLE'
  | 'CAPACITY_EXHAUSTED'
  | 'LIMIT_EXCEEDED'
  | 'FAILED_PRECONDITION'
  | 'UNAUTHENTICATED'
  | 'UNIMPLEMENTED'
  | 'CANCELLED'
  | 'INTERNAL';

/** Whether the same call may succeed when tried again: a new code does not compile without it (its gRPC status: wire/status.ts). */
export const retriableByDefault = {
  INVALID_ARGUMENT: false,
  PATH_VIOLATION: false,
  NOT_FOUND: false,
  SESSION_NOT_FOUND: false,
  TASK_NOT_FOUND: false,
  WORKER_LOST: true,
  UNAVAILABLE: true,
  CAPACITY_EXHAUSTED: true,
  LIMIT_EXCEEDED: false,
  FAILED_PRECONDITION: false,
  UNAUTHENTICATED: false,
  UNIMPLEMENTED: false,
  CANCELLED: false,
  INTERNAL: true,
} as const satisfies Record<ErrorCode, boolean>;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(retriableByDefault, value);
}

/** The one error class of the system: a code from the table, a message a person can act on. */
export class CodegenError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: string;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: string; retriable?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.name = 'CodegenError';
    this.code = code;
    this.retriable = options.retriable ?? retriableByDefault[code];
    this.details = options.details ?? '';
  }

  /** The plain form that travels in TaskError and in machine events. */
  toJSON(): ErrorInfo {
    return { code: this.code, message: this.message, details: this.details, retriable: this.retriable };
  }

  static from(info: ErrorInfo): CodegenError {
    const code = isErrorCode(info.code) ? info.code : 'INTERNAL';
    return new CodegenError(code, info.message, { details: info.details, retriable: info.retriable });
  }
}

export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  details: string;
  retriable: boolean;
}

/** Anything thrown, as an ErrorInfo; unknown throwables become INTERNAL with their message. */
export function toErrorInfo(err: unknown): ErrorInfo {
  if (err instanceof CodegenError) return err.toJSON();
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', message, details: '', retriable: true };
}

export const invalidArgument = (field: string, problem: string): CodegenError =>
  new CodegenError('INVALID_ARGUMENT', `${field}: ${problem}`);
