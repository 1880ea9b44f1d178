import{a}from"./chunk-JDOYE7LG.js";import"./chunk-7XXTHKD3.js";import"./chunk-UICGVJDT.js";import"./chunk-CT2UX4KZ.js";export{a as rememberDevice};
