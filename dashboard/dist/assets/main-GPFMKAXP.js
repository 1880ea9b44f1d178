import{a}from"./chunk-OOSNGNGC.js";import"./chunk-JDG2M3IM.js";import"./chunk-LDJPIZ2Y.js";import"./chunk-CT2UX4KZ.js";export{a as rememberDevice};
