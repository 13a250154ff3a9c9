/**
 * Tenancy over the coordinator's port: every session belongs to the tenant whose credential made
 * it, and a caller sees only its own (the admin role sees all). Another tenant's session or task
 * answers exactly as one that does not exist. Per-tenant quotas (sessions, live tasks) are
 * checked here, in the same synchronous step as the send into the actors that follows: the
 * in-process port makes its proxy before its first await, so two concurrent calls cannot both
 * pass a check that only one of them fits.
 */
import { CodegenError } from '../domain/errors.js';
import type { SessionView } from '../domain/sessions.js';
import type { TaskOutcome, TaskUpdate } from '../domain/tasks.js';
import { DEFAULT_TENANT, type Principal } from '../auth/authenticator.js';
import type { CheckpointView, CoordinatorPort, CreateSessionInput, SubmitTaskInput, TaskHandle, TaskView } from './port.js';
import { unknownCheckpoint } from '../checkpoints/store.js';

export interface TenantQuotas {
  /** Sessions a tenant may hold at once; 0: no quota. */
  maxSessions: number;
  /** Tasks (queued or running) a tenant may have at once; 0: no quota. */
  maxConcurrentTasks: number;
}

export interface TenantUsage {
  sessions: number;
  liveTasks: number;
}

/** What tenancy needs of the in-process port beyond CoordinatorPort: synchronous looks into the actors. */
export interface TenancyBackend extends CoordinatorPort {
  /** The session's view now; throws the port's own "no such session" error. */
  sessionViewNow(sessionId: string): SessionView;
  /** The error an id that does not exist gets (the same words for another tenant's). */
  unknownSession(sessionId: string): CodegenError;
  unknownTask(taskId: string, sessionId?: string): CodegenError;
  usageOf(tenant: string): TenantUsage;
}

/** Sessions made before tenants existed belong to the default tenant. */
export const ownerOf = (view: Pick<SessionView, 'tenant'>): string => view.tenant || DEFAULT_TENANT;

export class Tenancy {
  private readonly ports = new Map<string, CoordinatorPort>();

  constructor(
    private readonly backend: TenancyBackend,
    readonly quotas: TenantQuotas,
  ) {}

  /** The port a principal's calls go through (one per tenant and role). */
  portFor(principal: Principal): CoordinatorPort {
    const key = `${principal.admin ? 'admin' : 'tenant'}:${principal.tenant}`;
    let port = this.ports.get(key);
    if (!port) {
      port = new TenantPort(this.backend, principal, this.quotas);
      this.ports.set(key, port);
    }
    return port;
  }
}

class TenantPort implements CoordinatorPort {
  constructor(
    private readonly backend: TenancyBackend,
    private readonly principal: Principal,
    private readonly quotas: TenantQuotas,
  ) {}

  private sees(view: Pick<SessionView, 'tenant'>): boolean {
    return this.principal.admin || ownerOf(view) === this.principal.tenant;
  }

  /** The session, when this caller may see it; otherwise the error of one that does not exist. */
  private owned(sessionId: string): SessionView {
    const view = this.backend.sessionViewNow(sessionId);
    if (!this.sees(view)) throw this.backend.unknownSession(sessionId);
    return view;
  }

  private quotaError(what: string, used: number, max: number, variable: string, advice: string): CodegenError {
    return new CodegenError('LIMIT_EXCEEDED', `quota: tenant ${JSON.stringify(this.principal.tenant)} has ${used} ${what}, the most ${variable}=${max} allows; ${advice}`);
  }

  createSession(input: CreateSessionInput): Promise<SessionView> {
    const max = this.quotas.maxSessions;
    if (max > 0) {
      const used = this.backend.usageOf(this.principal.tenant).sessions;
      if (used >= max) return Promise.reject(this.quotaError('sessions', used, max, 'TENANT_MAX_SESSIONS', 'destroy a session first'));
    }
    return this.backend.createSession({ ...input, tenant: this.principal.tenant });
  }

  async destroySession(sessionId: string, options?: { force?: boolean; saveCheckpoint?: boolean }) {
    this.owned(sessionId);
    return this.backend.destroySession(sessionId, options);
  }

  /** The checkpoint, when this caller may see it; otherwise the error of one that does not exist. */
  private async ownedCheckpoint(checkpointId: string): Promise<CheckpointView> {
    let c: CheckpointView;
    try {
      c = await this.backend.getCheckpoint(checkpointId);
    } catch (err) {
      // A damaged record says DATA_LOSS only to whoever may see it: admins.
      if (err instanceof CodegenError && err.code === 'DATA_LOSS' && !this.principal.admin) throw unknownCheckpoint(checkpointId);
      throw err;
    }
    if (!this.sees(c)) throw unknownCheckpoint(checkpointId);
    return c;
  }

  async checkpointSession(sessionId: string, options?: { name?: string }) {
    this.owned(sessionId);
    return this.backend.checkpointSession(sessionId, options);
  }

  async restoreCheckpoint(checkpointId: string, options: { workerId?: string; createNew?: boolean } = {}) {
    const c = await this.ownedCheckpoint(checkpointId);
    if (options.createNew) {
      const max = this.quotas.maxSessions;
      const used = max > 0 ? this.backend.usageOf(ownerOf(c)).sessions : 0;
      if (max > 0 && used >= max) throw this.quotaError('sessions', used, max, 'TENANT_MAX_SESSIONS', 'destroy a session first');
    } else {
      this.ownedOr(c.sessionId);
    }
    return this.backend.restoreCheckpoint(checkpointId, options);
  }

  getCheckpoint(checkpointId: string) {
    return this.ownedCheckpoint(checkpointId);
  }

  async listCheckpoints(sessionId = '') {
    if (sessionId) this.owned(sessionId);
    const all = await this.backend.listCheckpoints(sessionId);
    return this.principal.admin ? all : all.filter((c) => this.sees(c));
  }

  async deleteCheckpoint(checkpointId: string) {
    // A damaged record names no owner it can be trusted for: admins may still delete it.
    await this.ownedCheckpoint(checkpointId).catch((err: unknown) => {
      if (!(this.principal.admin && err instanceof CodegenError && err.code === 'DATA_LOSS')) throw err;
    });
    return this.backend.deleteCheckpoint(checkpointId);
  }

  /** Like owned(), but a session that no longer exists passes (the call itself says what to do then). */
  private ownedOr(sessionId: string): void {
    let view: SessionView;
    try {
      view = this.backend.sessionViewNow(sessionId);
    } catch {
      return;
    }
    if (!this.sees(view)) throw this.backend.unknownSession(sessionId);
  }

  async getSession(sessionId: string): Promise<SessionView> {
    return this.owned(sessionId);
  }

  async listSessions(): Promise<SessionView[]> {
    const all = await this.backend.listSessions();
    return this.principal.admin ? all : all.filter((v) => this.sees(v));
  }

  async getMetadata(sessionId: string) {
    this.owned(sessionId);
    return this.backend.getMetadata(sessionId);
  }

  async putMetadata(sessionId: string, metadata: Record<string, string>, merge: boolean) {
    this.owned(sessionId);
    return this.backend.putMetadata(sessionId, metadata, merge);
  }

  async submitTask(input: SubmitTaskInput, onUpdate: (update: TaskUpdate, taskId: string) => void): Promise<TaskHandle> {
    this.owned(input.sessionId);
    const max = this.quotas.maxConcurrentTasks;
    if (max > 0) {
      const used = this.backend.usageOf(this.principal.tenant).liveTasks;
      if (used >= max) throw this.quotaError('tasks queued or running', used, max, 'TENANT_MAX_CONCURRENT_TASKS', 'wait for one to finish (task_status) or cancel one, then retry');
    }
    return this.backend.submitTask(input, onUpdate);
  }

  /** The task, when its session is this caller's; otherwise the error of a task that does not exist. */
  private async ownedTask(taskId: string, sessionId?: string): Promise<TaskView> {
    if (sessionId) this.owned(sessionId);
    const task = await this.backend.getTask(taskId, sessionId);
    let visible: boolean;
    try {
      visible = this.sees(this.backend.sessionViewNow(task.sessionId));
    } catch {
      visible = false;
    }
    if (!visible) throw this.backend.unknownTask(taskId, sessionId);
    return task;
  }

  async watchTask(taskId: string, sessionId: string | undefined, onUpdate: (update: TaskUpdate, taskId: string) => void) {
    await this.ownedTask(taskId, sessionId);
    return this.backend.watchTask(taskId, sessionId, onUpdate);
  }

  async cancelTask(taskId: string, reason: string, sessionId?: string) {
    await this.ownedTask(taskId, sessionId);
    return this.backend.cancelTask(taskId, reason, sessionId);
  }

  getTask(taskId: string, sessionId?: string): Promise<TaskView> {
    return this.ownedTask(taskId, sessionId);
  }

  async waitTask(taskId: string, timeoutMs: number): Promise<TaskOutcome | undefined> {
    await this.ownedTask(taskId);
    return this.backend.waitTask(taskId, timeoutMs);
  }

  /** The fleet (every tenant's load on it): an operator's view, as /metrics and the live view are. */
  async listWorkers() {
    if (!this.principal.admin) {
      throw new CodegenError('PERMISSION_DENIED', 'ListWorkers covers the whole fleet; use an admin credential (CLIENT_TOKEN, or a key made with `codegen-mcp keys add TENANT --admin`)');
    }
    return this.backend.listWorkers();
  }
}
