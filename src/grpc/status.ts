import * as grpc from '@grpc/grpc-js';
import { CodegenError, errorCodes, isErrorCode, toErrorInfo, type ErrorCode } from '../domain/errors.js';

/** A gRPC status error for anything thrown by the actors' answers. */
export function toServiceError(err: unknown): Partial<grpc.StatusObject> & Error {
  const info = toErrorInfo(err);
  const e = new Error(info.message) as Error & Partial<grpc.StatusObject>;
  e.code = errorCodes[info.code].grpc;
  e.details = info.message;
  const md = new grpc.Metadata();
  md.set('codegen-error-code', info.code);
  e.metadata = md;
  return e;
}

const isServiceError = (err: unknown): err is grpc.ServiceError =>
  err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number';

/**
 * Back from a gRPC failure to the CodegenError the coordinator meant: its own code when it sent
 * one (the `codegen-error-code` metadata), else one read from the status and the context.
 */
export function remoteError(err: unknown, context: 'session' | 'task' | 'other', address: string): CodegenError {
  if (err instanceof CodegenError) return err;
  if (!isServiceError(err)) return new CodegenError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
  const message = err.details || err.message;
  const sent = err.metadata?.get('codegen-error-code')?.[0];
  if (typeof sent === 'string' && isErrorCode(sent)) return new CodegenError(sent, message, { cause: err });
  switch (err.code) {
    case grpc.status.NOT_FOUND: {
      // Older or foreign servers send no code: tell a session from a task by the message, then by the call.
      const code = /\bsession\b/i.test(message) || (!/\btask\b/i.test(message) && context === 'session') ? 'SESSION_NOT_FOUND' : /\btask\b/i.test(message) || context === 'task' ? 'TASK_NOT_FOUND' : 'NOT_FOUND';
      return new CodegenError(code, message, { cause: err });
    }
    case grpc.status.UNAVAILABLE:
      return new CodegenError('INTERNAL', `cannot reach the coordinator at ${address}: ${message}`, { cause: err, retriable: true });
    case grpc.status.DEADLINE_EXCEEDED:
      return new CodegenError('INTERNAL', `the coordinator at ${address} did not answer in time: ${message}`, { cause: err, retriable: true });
    default:
      return new CodegenError(codeByStatus[err.code] ?? 'INTERNAL', message, { cause: err });
  }
}

const codeByStatus: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [grpc.status.OUT_OF_RANGE]: 'INVALID_ARGUMENT',
  [grpc.status.RESOURCE_EXHAUSTED]: 'CAPACITY_EXHAUSTED',
  [grpc.status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [grpc.status.ABORTED]: 'FAILED_PRECONDITION',
  [grpc.status.UNIMPLEMENTED]: 'UNIMPLEMENTED',
  [grpc.status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [grpc.status.PERMISSION_DENIED]: 'UNAUTHENTICATED',
  [grpc.status.CANCELLED]: 'CANCELLED',
};

/** Wraps a promise-returning unary handler: every throw becomes a status, nothing escapes. */
export function unaryHandler<Req, Res>(fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (res) => callback(null, res),
        (err) => callback(toServiceError(err) as grpc.ServiceError, null),
      );
  };
}
