declare const VIRTWIRE_VERSION: string | undefined;
/** Injected by the bundler (build.mjs); "dev" when run from source. */
export const VERSION: string = typeof VIRTWIRE_VERSION === 'string' ? VIRTWIRE_VERSION : 'dev';
