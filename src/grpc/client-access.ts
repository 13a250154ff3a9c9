import type * as grpc from '@grpc/grpc-js';
import type { ClientAuthenticator, Principal } from '../auth/authenticator.js';
import type { CoordinatorPort } from '../runtime/port.js';
import type { Tenancy } from '../runtime/tenancy.js';

/** Which port a client call uses: its `authorization` metadata names a tenant; none or a bad one throws UNAUTHENTICATED. */
export interface ClientAccess {
  portFor(metadata: grpc.Metadata): CoordinatorPort;
}

export function clientAccess(auth: ClientAuthenticator, tenancy: Tenancy): ClientAccess {
  return {
    portFor: (metadata) => {
      const value = metadata.get('authorization')[0];
      const principal: Principal = auth.authenticate(typeof value === 'string' ? value : undefined);
      return tenancy.portFor(principal);
    },
  };
}

/** Every call gets the same port (in-process tests of one handler, with no credentials). */
export const openAccess = (port: CoordinatorPort): ClientAccess => ({ portFor: () => port });
