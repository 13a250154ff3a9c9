import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { packageRoot } from '../config/package-info.js';
import type { ProtoGrpcType } from './messages.js';

/** The largest gRPC message either end accepts (client calls and the worker's task stream). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** The loader options of the public contract (api.md): clients use the same. */
export const protoLoaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const protoFiles = [
  'codegen/v1/common.proto',
  'codegen/v1/tools.proto',
  'codegen/v1/session_management.proto',
  'codegen/v1/task_execution.proto',
  'codegen/v1/worker_lifecycle.proto',
];

/** proto/ sits at the package root, both from src/ (tests) and from dist/src/ (built). */
export function findProtoDir(): string {
  const dir = join(packageRoot(), 'proto');
  if (!existsSync(join(dir, 'codegen', 'v1', 'common.proto'))) throw new Error(`proto/codegen/v1 not found in ${packageRoot()}`);
  return dir;
}

/** The three services' typed client constructors (each with its `service` definition). */
export type CodegenServices = Pick<ProtoGrpcType['codegen']['v1'], 'SessionManagement' | 'TaskExecution' | 'WorkerLifecycle'>;

let cached: { definition: protoLoader.PackageDefinition; services: CodegenServices } | undefined;

export function loadProtos(): { definition: protoLoader.PackageDefinition; services: CodegenServices } {
  if (cached) return cached;
  const definition = protoLoader.loadSync(protoFiles, { ...protoLoaderOptions, includeDirs: [findProtoDir()] });
  // The generated ProtoGrpcType describes what loadPackageDefinition builds from these very protos and options.
  const { SessionManagement, TaskExecution, WorkerLifecycle } = (grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType).codegen.v1;
  cached = { definition, services: { SessionManagement, TaskExecution, WorkerLifecycle } };
  return cached;
}
