/** Table oids are PostgreSQL oids (uint4). */
const OID_MAX = 4_294_967_295;

/**
 * The table named by a table notification ('t' followed by the table's oid in plain decimal), or undefined
 * for anything else, never an exception: anyone allowed to NOTIFY can send anything on the channel.
 */
export function parseTableNotification(text: string): number | undefined {
  if (!/^t[1-9]\d{0,9}$/.test(text)) return undefined;
  const oid = Number(text.slice(1));
  return oid <= OID_MAX ? oid : undefined;
}

/**
 * Which watched views read which tables (view_state.source_relids), so that the notification of a table
 * that turned dirty schedules every view reading it. Replaced whole at every load of the views.
 */
export class SourceMap {
  private readers = new Map<number, number[]>();

  replace(views: readonly { id: number; sourceRelids: readonly number[] }[]): void {
    const readers = new Map<number, number[]>();
    for (const v of views)
      for (const relid of v.sourceRelids) readers.set(relid, [...(readers.get(relid) ?? []), v.id]);
    this.readers = readers;
  }

  /** The views reading the table; empty when no known view does (the list may be out of date). */
  viewsReading(relid: number): readonly number[] {
    return this.readers.get(relid) ?? [];
  }
}
