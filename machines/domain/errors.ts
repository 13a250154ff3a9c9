/**
 * Error codes and the plain error shape that travels in events, machine contexts and TaskError.
 * Pure data: the error class and the gRPC mapping live in src/ (domain/errors.ts, wire/status.ts).
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'PATH_VIOLATION'
  | 'NOT_FOUND'
  | 'SESSION_NOT_FOUND'
  | 'TASK_NOT_FOUND'
  | 'WORKER_LOST'
  | 'UNAVAILABLE'
  | 'CAPACITY_EXHAUSTED'
  | 'LIMIT_EXCEEDED'
  | 'FAILED_PRECONDITION'
  | 'ALREADY_EXISTS'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'UNIMPLEMENTED'
  | 'CANCELLED'
  | 'DATA_LOSS'
  | 'INTERNAL';

export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  details: string;
  retriable: boolean;
}

/** Whether a client may simply try again, per code; one table, so a new code does not compile without it. */
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
  ALREADY_EXISTS: false,
  PERMISSION_DENIED: false,
  UNAUTHENTICATED: false,
  UNIMPLEMENTED: false,
  CANCELLED: false,
  DATA_LOSS: false,
  INTERNAL: true,
} as const satisfies Record<ErrorCode, boolean>;

export const isErrorCode = (value: string): value is ErrorCode => Object.prototype.hasOwnProperty.call(retriableByDefault, value);

/** An ErrorInfo with the code's default retriability. */
export const errorInfo = (code: ErrorCode, message: string, retriable: boolean = retriableByDefault[code]): ErrorInfo => ({ code, message, details: '', retriable });
