/**
 * Argument completion (completion/complete) for the session-file template and the prompts:
 * session ids this connection may use, and file paths of one session. Values start with what
 * the client typed; the SDK sends at most 100 and says how many there were (total, hasMore).
 * Completion never fails: what cannot be completed (an unknown session, a busy one) completes
 * to nothing.
 */
import type { McpConnection } from './connection.js';
import { resourceFiles, runQuiet } from './file-listing.js';

/** How long path completion waits for its listing (the session may be busy with another task). */
const PATH_LISTING_WAIT_MS = 5_000;

/** The caller's sessions (as session_list shows them), most recently active first. */
export async function completeSessionId(conn: McpConnection, typed: string): Promise<string[]> {
  try {
    const views = (await conn.port.listSessions()).filter((v) => conn.sessions.visible(v) && v.sessionId.startsWith(typed));
    return views.sort((a, b) => b.lastActivityMs - a.lastActivityMs).map((v) => v.sessionId);
  } catch (err) {
    conn.logger.debug({ err }, 'session id completion failed');
    return [];
  }
}

/**
 * Files of the session (`sessionId`, else the connection's default session when it has one)
 * whose path starts with `typed`: one recursive listing of the folder typed so far.
 */
export async function completePath(conn: McpConnection, sessionId: string | undefined, typed: string): Promise<string[]> {
  const sid = sessionId || conn.sessions.defaultSessionId;
  if (!sid) return [];
  try {
    // Seen through the caller's port, without counting as a use of the session (no list change).
    const view = await conn.port.getSession(sid);
    if (!conn.sessions.visible(view)) return [];
    // A busy session would queue the listing behind its task, one per keystroke: nothing, then.
    if (view.activeTasks > 0) return [];
    const slash = typed.lastIndexOf('/');
    const folder = slash > 0 ? typed.slice(0, slash) : '';
    const outcome = await runQuiet(conn.port, sid, { tool: 'fs_list', input: { path: folder, recursive: true, pattern: '' } }, PATH_LISTING_WAIT_MS);
    if (outcome === 'timeout' || outcome.type !== 'result' || outcome.reply?.tool !== 'fs_list') return [];
    return resourceFiles(outcome.reply.output.files)
      .map((f) => f.path)
      .filter((p) => p.startsWith(typed));
  } catch (err) {
    conn.logger.debug({ err, sessionId: sid }, 'path completion failed');
    return [];
  }
}
