import { status as GrpcStatus } from '@grpc/grpc-js';

/** Every failure the system reports has one of these codes (they travel in TaskError.code). */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'PATH_VIOLATION'
  | 'NOT_FOUND'
  | 'SESSION_NOT_FOUND'
  | 'TASK_NOT_FOUND'
  | 'WORKER_LOST'
  | 'CAPACITY_EXHAUSTED'
  | 'LIMIT_EXCEEDED'
  | 'FAILED_PRECONDITION'
  | 'UNAUTHENTICATED'
  | 'UNIMPLEMENTED'
  | 'CANCELLED'
  | 'INTERNAL';

interface ErrorCodeInfo {
  grpc: GrpcStatus;
  retriable: boolean;
}

/** One table: a new code does not compile without its gRPC mapping. */
export const errorCodes = {
  INVALID_ARGUMENT: { grpc: GrpcStatus.INVALID_ARGUMENT, retriable: false },
  PATH_VIOLATION: { grpc: GrpcStatus.INVALID_ARGUMENT, retriable: false },
  NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, retriable: false },
  SESSION_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, retriable: false },
  TASK_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, retriable: false },
  WORKER_LOST: { grpc: GrpcStatus.UNAVAILABLE, retriable: true },
  CAPACITY_EXHAUSTED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, retriable: true },
  LIMIT_EXCEEDED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, retriable: false },
  FAILED_PRECONDITION: { grpc: GrpcStatus.FAILED_PRECONDITION, retriable: false },
  UNAUTHENTICATED: { grpc: GrpcStatus.UNAUTHENTICATED, retriable: false },
  UNIMPLEMENTED: { grpc: GrpcStatus.UNIMPLEMENTED, retriable: false },
  CANCELLED: { grpc: GrpcStatus.CANCELLED, retriable: false },
  INTERNAL: { grpc: GrpcStatus.INTERNAL, retriable: true },
} as const satisfies Record<ErrorCode, ErrorCodeInfo>;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(errorCodes, value);
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
    this.retriable = options.retriable ?? errorCodes[code].retriable;
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
