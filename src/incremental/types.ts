/** A column of a view or of a source table, with its type as format_type() prints it (names qualified). */
export interface Column {
  name: string;
  type: string;
}

/** A table an incremental view reads. */
export interface Source {
  oid: string;
  schema: string;
  name: string;
  /** The columns the view reads from it (its log records these). */
  columns: Column[];
}
