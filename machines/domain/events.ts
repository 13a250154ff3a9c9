/** When the event that caused a transition happened: events from outside carry `atMs`; internal ones (raised, eventless, done) do not, and get `fallback`. */
export const atMsOf = (event: { type: string }, fallback = 0): number => ('atMs' in event && typeof event.atMs === 'number' ? event.atMs : fallback);
