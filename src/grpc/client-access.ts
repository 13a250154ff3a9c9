import type * as grpc from '@grpc/grpc-js';
import type { ClientAuthenticator, Principal } from '../auth/authenticator.js';
import type { CoordinatorPort } from '../runtime/port.js';
import type { Tenancy } from '../runtime/tenancy.js';
import { noAudit, type AuditLog } from '../log/audit.js';
import { auditedPort, peerAddress } from '../runtime/audited-port.js';

/** Which port a client call uses: its `authorization` metadata names a tenant; none or a bad one throws UNAUTHENTICATED. */
export interface ClientAccess {
  /** peer: the call's address (call.getPeer()), for the audit log. */
  portFor(metadata: grpc.Metadata, peer?: string): CoordinatorPort;
}

export function clientAccess(auth: ClientAuthenticator, tenancy: Tenancy, audit: AuditLog = noAudit): ClientAccess {
  return {
    portFor: (metadata, peer) => {
      const value = metadata.get('authorization')[0];
      const principal: Principal = auth.authenticate(typeof value === 'string' ? value : undefined);
      const port = tenancy.portFor(principal);
      return audit.enabled ? auditedPort(port, audit, { tenant: principal.tenant, credential: principal.credential, peer: peerAddress(peer) }) : port;
    },
  };
}

/** Every call gets the same port (in-process tests of one handler, with no credentials). */
export const openAccess = (port: CoordinatorPort): ClientAccess => ({ portFor: () => port });
