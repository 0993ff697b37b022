// What the build (web/build.mjs) gives the page.
declare module "*.css";
