import * as grpc from '@grpc/grpc-js';
import { CodegenError, errorCodes, toErrorInfo, type ErrorCode } from '../domain/errors.js';

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

/** Back from a gRPC status (remote clients) to a CodegenError, keeping our code when the server sent it. */
export function fromServiceError(err: grpc.ServiceError, fallback: ErrorCode = 'INTERNAL'): CodegenError {
  const sent = err.metadata?.get('codegen-error-code')?.[0];
  if (typeof sent === 'string' && sent in errorCodes) return new CodegenError(sent as ErrorCode, err.details || err.message);
  const byStatus: Partial<Record<grpc.status, ErrorCode>> = {
    [grpc.status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
    [grpc.status.NOT_FOUND]: 'NOT_FOUND',
    [grpc.status.RESOURCE_EXHAUSTED]: 'CAPACITY_EXHAUSTED',
    [grpc.status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
    [grpc.status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
    [grpc.status.UNIMPLEMENTED]: 'UNIMPLEMENTED',
    [grpc.status.UNAVAILABLE]: 'WORKER_LOST',
    [grpc.status.CANCELLED]: 'CANCELLED',
  };
  return new CodegenError(byStatus[err.code] ?? fallback, err.details || err.message);
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
