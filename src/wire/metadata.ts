/** The gRPC metadata keys of the protocol (both sides read and write these names). */

/** The worker's WORKER_TOKEN, on every WorkerLifecycle call. */
export const WORKER_TOKEN_METADATA = 'x-worker-token';

/** The domain ErrorCode of a failed call, in its trailers: the status alone cannot tell SESSION_NOT_FOUND from TASK_NOT_FOUND. */
export const ERROR_CODE_METADATA = 'codegen-error-code';
