declare const VIRTWIRE_VERSION: string | undefined;
/** Injected by the bundler (build.mjs); "dev" when run from source. */
export const VERSION: string = typeof VIRTWIRE_VERSION === 'string' ? VIRTWIRE_VERSION : 'dev';

declare const VIRTWIRE_BUILD: string | undefined;
/**
 * A digest of the sources this bundle was built from (build.mjs): what a
 * cache of derived results keys on, since the version number stays the same
 * between builds. Random when run from source, so nothing is ever reused there.
 */
export const BUILD: string = typeof VIRTWIRE_BUILD === 'string' ? VIRTWIRE_BUILD : `dev-${process.pid}-${Date.now()}`;
