/** The gRPC metadata keys of the protocol (both sides read and write these names). */

/** The worker's WORKER_TOKEN, on every WorkerLifecycle call. */
export const WORKER_TOKEN_METADATA = 'x-worker-token';

/** The domain ErrorCode of a failed call, in its trailers: the status alone cannot tell SESSION_NOT_FOUND from TASK_NOT_FOUND. */
export const ERROR_CODE_METADATA = 'codegen-error-code';

/** Response headers of ExecuteTask, sent once the task is accepted: its id, and whether this call attached to an earlier run. */
export const TASK_ID_METADATA = 'codegen-task-id';
export const TASK_DUPLICATE_METADATA = 'codegen-task-duplicate';
