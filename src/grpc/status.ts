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
  const S = grpc.status;
  let code: ErrorCode;
  switch (err.code) {
    case S.NOT_FOUND:
      code = /\bsession\b/i.test(message) ? 'SESSION_NOT_FOUND' : /\btask\b/i.test(message) ? 'TASK_NOT_FOUND' : context === 'session' ? 'SESSION_NOT_FOUND' : context === 'task' ? 'TASK_NOT_FOUND' : 'NOT_FOUND';
      break;
    case S.INVALID_ARGUMENT:
    case S.OUT_OF_RANGE:
      code = 'INVALID_ARGUMENT';
      break;
    case S.RESOURCE_EXHAUSTED:
      code = 'CAPACITY_EXHAUSTED';
      break;
    case S.FAILED_PRECONDITION:
    case S.ABORTED:
      code = 'FAILED_PRECONDITION';
      break;
    case S.UNIMPLEMENTED:
      code = 'UNIMPLEMENTED';
      break;
    case S.UNAUTHENTICATED:
    case S.PERMISSION_DENIED:
      code = 'UNAUTHENTICATED';
      break;
    case S.CANCELLED:
      code = 'CANCELLED';
      break;
    case S.UNAVAILABLE:
      return new CodegenError('INTERNAL', `cannot reach the coordinator at ${address}: ${message}`, { cause: err, retriable: true });
    case S.DEADLINE_EXCEEDED:
      return new CodegenError('INTERNAL', `the coordinator at ${address} did not answer in time: ${message}`, { cause: err, retriable: true });
    default:
      code = 'INTERNAL';
  }
  return new CodegenError(code, message, { cause: err });
}

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
