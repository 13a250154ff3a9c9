import { isErrorCode, retriableByDefault, type ErrorCode, type ErrorInfo } from '../../machines/domain/errors.js';

// The codes and the plain error shape are pure data shared with the machines (machines/domain/errors.ts).
export { errorInfo, isErrorCode, retriableByDefault, type ErrorCode, type ErrorInfo } from '../../machines/domain/errors.js';

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


/** Anything thrown, as an ErrorInfo; unknown throwables become INTERNAL with their message. */
export function toErrorInfo(err: unknown): ErrorInfo {
  if (err instanceof CodegenError) return err.toJSON();
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', message, details: '', retriable: true };
}

export const invalidArgument = (field: string, problem: string): CodegenError =>
  new CodegenError('INVALID_ARGUMENT', `${field}: ${problem}`);
