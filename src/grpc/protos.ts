import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { packageRoot } from '../config/package-info.js';

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

let cached: { definition: protoLoader.PackageDefinition; services: CodegenServices } | undefined;

export interface CodegenServices {
  SessionManagement: grpc.ServiceClientConstructor;
  TaskExecution: grpc.ServiceClientConstructor;
  WorkerLifecycle: grpc.ServiceClientConstructor;
}

export function loadProtos(): { definition: protoLoader.PackageDefinition; services: CodegenServices } {
  if (cached) return cached;
  const definition = protoLoader.loadSync(protoFiles, { ...protoLoaderOptions, includeDirs: [findProtoDir()] });
  const root = grpc.loadPackageDefinition(definition) as unknown as { codegen: { v1: Record<string, grpc.ServiceClientConstructor> } };
  const v1 = root.codegen.v1;
  const services: CodegenServices = {
    SessionManagement: v1['SessionManagement']!,
    TaskExecution: v1['TaskExecution']!,
    WorkerLifecycle: v1['WorkerLifecycle']!,
  };
  cached = { definition, services };
  return cached;
}
