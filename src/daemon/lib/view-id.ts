/** View ids are PostgreSQL integers (int4). */
const INT4_MAX = 2_147_483_647;

/**
 * A view id from text that comes from outside (a notification payload, a URL segment): a positive int4 in
 * plain decimal, with no sign, leading zero or space. Anything else is undefined, never an exception.
 */
export function parseViewId(text: string): number | undefined {
  if (!/^[1-9]\d{0,9}$/.test(text)) return undefined;
  const id = Number(text);
  return id <= INT4_MAX ? id : undefined;
}
