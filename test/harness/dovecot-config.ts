// The private Dovecot's configuration now lives in product code (`ceerion start` uses it too).
export * from '../../stack/dovecot/config.ts';
