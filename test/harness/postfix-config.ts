// The private Postfix's configuration now lives in product code (`ceerion start` uses it too).
export * from '../../stack/postfix/config.ts';
