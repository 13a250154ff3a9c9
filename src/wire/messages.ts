/**
 * The protocol's message types, generated from proto/ (scripts/gen-wire.mjs), under one import.
 * `X` is what we send (permissive: int64 as number or string, optional fields); `X__Output` is
 * what grpc-js hands us with the contract's loader options (every scalar present, int64 as a
 * string, enums as names, the oneof's name in its virtual field).
 */
export type { ProtoGrpcType } from './generated/worker_lifecycle.js';

export type { SessionState, SessionState__Output } from './generated/codegen/v1/SessionState.js';
export type { SessionConfig__Output } from './generated/codegen/v1/SessionConfig.js';

export type { ToolRequest, ToolRequest__Output } from './generated/codegen/v1/ToolRequest.js';
export type { ToolResponse, ToolResponse__Output } from './generated/codegen/v1/ToolResponse.js';

export type { TaskRequest, TaskRequest__Output } from './generated/codegen/v1/TaskRequest.js';
export type { TaskResponse, TaskResponse__Output } from './generated/codegen/v1/TaskResponse.js';
export type { TaskResult, _codegen_v1_TaskResult_Status as TaskResultStatus } from './generated/codegen/v1/TaskResult.js';
export type { TaskError, TaskError__Output } from './generated/codegen/v1/TaskError.js';
export type { ExecutionConstraints__Output } from './generated/codegen/v1/ExecutionConstraints.js';
export type { ProgressUpdate, ProgressUpdate__Output } from './generated/codegen/v1/ProgressUpdate.js';
export type { StatusResponse__Output } from './generated/codegen/v1/StatusResponse.js';
export type { StatusRequest__Output } from './generated/codegen/v1/StatusRequest.js';
export type { SessionDescription, SessionDescription__Output } from './generated/codegen/v1/SessionDescription.js';
export type { GetSessionStatusResponse, GetSessionStatusResponse__Output } from './generated/codegen/v1/GetSessionStatusResponse.js';

export type { CoordinatorMessage, CoordinatorMessage__Output } from './generated/codegen/v1/CoordinatorMessage.js';
export type { WorkerMessage, WorkerMessage__Output } from './generated/codegen/v1/WorkerMessage.js';
export type { CommandReply } from './generated/codegen/v1/CommandReply.js';

export type { SessionManagementClient, SessionManagementHandlers } from './generated/codegen/v1/SessionManagement.js';
export type { TaskExecutionClient, TaskExecutionHandlers } from './generated/codegen/v1/TaskExecution.js';
export type { WorkerLifecycleClient, WorkerLifecycleHandlers } from './generated/codegen/v1/WorkerLifecycle.js';

export type { BlobChunk, BlobChunk__Output } from './generated/codegen/v1/BlobChunk.js';
export type { GetBlobRequest__Output } from './generated/codegen/v1/GetBlobRequest.js';
export type { MissingBlobsRequest__Output } from './generated/codegen/v1/MissingBlobsRequest.js';
export type { MissingBlobsResponse, MissingBlobsResponse__Output } from './generated/codegen/v1/MissingBlobsResponse.js';
export type { PutBlobResponse, PutBlobResponse__Output } from './generated/codegen/v1/PutBlobResponse.js';
export type { CheckpointInfo, CheckpointInfo__Output } from './generated/codegen/v1/CheckpointInfo.js';
export type { CheckpointMetadata, CheckpointMetadata__Output } from './generated/codegen/v1/CheckpointMetadata.js';
