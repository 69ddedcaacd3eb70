GET
/console/console.js