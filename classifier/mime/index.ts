/** MIME parsing: raw bytes → ParsedMessage, and HTML → visible text. See README.md. */
export { parseMessage, DEFAULT_LIMITS } from './parse.ts';
export { htmlToText, type HtmlText } from './html.ts';
