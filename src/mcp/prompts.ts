/**
 * Prompts: ready-made requests a user can pick in their client, each naming the tools that do
 * the work. Arguments complete like the resource template's (session ids, file paths).
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import type { GetPromptResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { McpConnection } from './connection.js';
import { completePath, completeSessionId } from './completions.js';
import { fileUri, mimeTypeOf } from './uris.js';

/** The sentence that tells the model which session to use, and how. */
function sessionLine(sessionId: string | undefined): string {
  return sessionId
    ? `Work in session ${sessionId}: pass session_id "${sessionId}" to every tool call.`
    : "Work in this connection's default session: call the tools without session_id.";
}

const splitPackages = (packages: string): string[] => packages.split(/[\s,]+/).filter(Boolean);

export function registerPrompts(server: McpServer, conn: McpConnection): void {
  const sessionArg = completable(z.string().optional().describe("The session to use (default: this connection's default session)"), (typed) =>
    completeSessionId(conn, typed ?? ''),
  );

  server.registerPrompt(
    'analyse_data_file',
    {
      title: 'Analyse a data file in a session',
      description: 'Look at a data file of a session (CSV, JSON, Parquet, ...) with pandas in the persistent interpreter and summarise what it holds.',
      argsSchema: {
        path: completable(z.string().min(1).describe('The file, relative to the workspace (e.g. data/sales.csv)'), (typed, context) =>
          completePath(conn, context?.arguments?.['session_id'], typed ?? ''),
        ),
        session_id: sessionArg,
        question: z.string().optional().describe('What to find out (optional)'),
      },
    },
    ({ path, session_id, question }): GetPromptResult => {
      const sessionId = session_id || conn.sessions.defaultSessionId;
      const text = [
        `Analyse the data file "${path}". ${sessionLine(session_id || undefined)}`,
        ...(question ? [`The question to answer: ${question}`] : []),
        '',
        `1. Look before loading: fs_list shows its size; fs_read it (or read its resource) to see the first lines and the format.`,
        '2. Load it with python_exec, which keeps variables between calls (e.g. pandas.read_csv, read_json or read_parquet as the format needs). If an import fails, pkg_install the package (pandas, pyarrow, ...) and run python_exec again.',
        '3. Describe it: shape, columns and their types, missing values, summary statistics, and anything odd (duplicates, outliers, mixed types).',
        '4. Save charts or derived tables under artifacts/ (e.g. plt.savefig("artifacts/overview.png")) and fetch them with artifact_get.',
        '5. End with a short summary of what the data holds and what to look at next.',
      ].join('\n');
      const messages: GetPromptResult['messages'] = [{ role: 'user', content: { type: 'text', text } }];
      if (sessionId) {
        messages.push({ role: 'user', content: { type: 'resource_link', uri: fileUri(sessionId, path), name: path, mimeType: mimeTypeOf(path, true) } });
      }
      return { description: `Analyse ${path}`, messages };
    },
  );

  server.registerPrompt(
    'setup_project',
    {
      title: 'Set up a project with packages',
      description: 'Prepare a session for a Python project: install packages, pin what was installed, check the imports, and checkpoint the result.',
      argsSchema: {
        packages: z.string().min(1).describe('Packages to install, separated by spaces or commas (e.g. "pandas matplotlib==3.9.2")'),
        session_id: sessionArg,
      },
    },
    ({ packages, session_id }): GetPromptResult => {
      const list = splitPackages(packages);
      const first = session_id
        ? `1. ${sessionLine(session_id)}`
        : '1. Call session_create for a fresh session, and pass its session_id to every tool call that follows.';
      const text = [
        `Set up a Python project with these packages: ${list.join(', ')}.`,
        '',
        first,
        `2. Call pkg_install with packages ${JSON.stringify(list)}. Check the versions it reports as installed and whether any failed; correct failing names or versions and install again.`,
        '3. fs_write requirements.txt pinning the versions pkg_install reported (name==version), and main.py that imports each package and prints its version.',
        '4. run_python with file "main.py" to check that everything imports; fix what fails.',
        '5. session_checkpoint with name "project-setup", so session_restore can bring the project back to this point later.',
      ].join('\n');
      return { description: `Set up a project with ${list.join(', ')}`, messages: [{ role: 'user', content: { type: 'text', text } }] };
    },
  );
}
