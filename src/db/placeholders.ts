import { sqlConstants } from './protocol.js';

const PLACEHOLDER = /\{\{([A-Z_]+)\}\}/g;

/** Fills in the {{NAME}} placeholders of a routine or migration from src/db/protocol.ts; an unknown name is an error. */
export function expandRoutine(file: string, text: string): string {
  return text.replace(PLACEHOLDER, (_, name: string) => {
    const value = sqlConstants[name];
    if (value === undefined) throw new Error(`routine ${file} names an unknown constant {{${name}}}`);
    return value;
  });
}
