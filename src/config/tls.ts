import { existsSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './load.js';

/** PEM file paths for TLS ('' = not set). A server has cert+key (+ clientCa for mutual TLS); a client has ca (+ cert+key for mutual TLS). */
export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
  clientCa: string;
  serverName: string;
}

type TlsEnv = { TLS_CERT?: string; TLS_KEY?: string; TLS_CA?: string; TLS_CLIENT_CA?: string; TLS_SERVER_NAME?: string };

/** Reads and checks the TLS_* variables: files must exist, and a certificate comes with its key. */
export function tlsFiles(e: TlsEnv, role: 'server' | 'client'): TlsFiles {
  const problems: string[] = [];
  const file = (name: keyof TlsEnv): string => {
    const v = e[name] ?? '';
    if (!v) return '';
    const abs = path.resolve(v);
    if (!existsSync(abs)) problems.push(`${name}: no file ${JSON.stringify(abs)}`);
    return abs;
  };
  const files: TlsFiles = { cert: file('TLS_CERT'), key: file('TLS_KEY'), ca: file('TLS_CA'), clientCa: file('TLS_CLIENT_CA'), serverName: e.TLS_SERVER_NAME ?? '' };
  if (Boolean(files.cert) !== Boolean(files.key)) problems.push('TLS_CERT and TLS_KEY: set both (the certificate chain and its private key), or neither');
  if (role === 'server' && files.clientCa && !files.cert) problems.push('TLS_CLIENT_CA: mutual TLS needs TLS_CERT and TLS_KEY too');
  if (role === 'client' && files.cert && !files.ca) problems.push('TLS_CERT: a client certificate is for TLS to the coordinator: set TLS_CA too');
  if (problems.length) throw new ConfigError(problems);
  return files;
}
