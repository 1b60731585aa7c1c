/**
 * How each watched view is kept (mvrefresh.status.mode: 'incremental', 'full', or 'full: <clause>'), so that
 * a refresh's log line says it and an incremental view's cycle reads what its apply did. Replaced whole at
 * every load of the views; a view made incremental since reads as before until the reload that its watch
 * announces.
 */
export class ViewModes {
  private modes = new Map<number, string>();

  replace(views: readonly { id: number; mode: string }[]): void {
    this.modes = new Map(views.map((v) => [v.id, v.mode]));
  }

  /** The view's mode; undefined when the view is not (yet) known. */
  modeOf(viewId: number): string | undefined {
    return this.modes.get(viewId);
  }

  isIncremental(viewId: number): boolean {
    return this.modes.get(viewId) === INCREMENTAL;
  }

  /** The ids of the incremental views. */
  incrementalIds(): number[] {
    const ids: number[] = [];
    for (const [id, mode] of this.modes) if (mode === INCREMENTAL) ids.push(id);
    return ids;
  }
}

export const INCREMENTAL = 'incremental';
