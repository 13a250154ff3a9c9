import * as grpc from '@grpc/grpc-js';
import { CodegenError, isErrorCode, toErrorInfo, type ErrorCode } from '../domain/errors.js';
import { ERROR_CODE_METADATA } from './metadata.js';

/** The status each code travels with: a new code does not compile without its mapping. */
export const grpcStatusOf = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  PATH_VIOLATION: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  SESSION_NOT_FOUND: grpc.status.NOT_FOUND,
  TASK_NOT_FOUND: grpc.status.NOT_FOUND,
  WORKER_LOST: grpc.status.UNAVAILABLE,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  CAPACITY_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  LIMIT_EXCEEDED: grpc.status.RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  UNIMPLEMENTED: grpc.status.UNIMPLEMENTED,
  CANCELLED: grpc.status.CANCELLED,
  DATA_LOSS: grpc.status.DATA_LOSS,
  INTERNAL: grpc.status.INTERNAL,
} as const satisfies Record<ErrorCode, grpc.status>;

/** A gRPC status error for anything thrown by the actors' answers, its code in the trailers. */
export function toServiceError(err: unknown): Partial<grpc.StatusObject> & Error {
  const info = toErrorInfo(err);
  const e = new Error(info.message) as Error & Partial<grpc.StatusObject>;
  e.code = grpcStatusOf[info.code];
  e.details = info.message;
  const md = new grpc.Metadata();
  md.set(ERROR_CODE_METADATA, info.code);
  e.metadata = md;
  return e;
}

const isServiceError = (err: unknown): err is grpc.ServiceError =>
  err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number';

/** For peers that send no code (another server, or grpc-js itself): the nearest code of the status. */
const codeByStatus: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [grpc.status.OUT_OF_RANGE]: 'INVALID_ARGUMENT',
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.RESOURCE_EXHAUSTED]: 'CAPACITY_EXHAUSTED',
  [grpc.status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [grpc.status.ABORTED]: 'FAILED_PRECONDITION',
  [grpc.status.UNIMPLEMENTED]: 'UNIMPLEMENTED',
  [grpc.status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [grpc.status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpc.status.ALREADY_EXISTS]: 'ALREADY_EXISTS',
  [grpc.status.CANCELLED]: 'CANCELLED',
  [grpc.status.DATA_LOSS]: 'DATA_LOSS',
};

/**
 * Back from a gRPC failure to the CodegenError the peer meant: the code it sent in the trailers,
 * else the nearest one of the status. `peer` names who was called ("the coordinator at host:port").
 */
export function remoteError(err: unknown, peer: string): CodegenError {
  if (err instanceof CodegenError) return err;
  if (!isServiceError(err)) return new CodegenError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
  const message = err.details || err.message;
  const sent = err.metadata?.get(ERROR_CODE_METADATA)?.[0];
  if (typeof sent === 'string' && isErrorCode(sent)) return new CodegenError(sent, message, { cause: err });
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      return new CodegenError('UNAVAILABLE', `cannot reach ${peer}: ${message}`, { cause: err });
    case grpc.status.DEADLINE_EXCEEDED:
      return new CodegenError('UNAVAILABLE', `${peer} did not answer in time: ${message}`, { cause: err });
    default:
      return new CodegenError(codeByStatus[err.code] ?? 'INTERNAL', message, { cause: err });
  }
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
